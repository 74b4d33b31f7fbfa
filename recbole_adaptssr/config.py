"""``Config`` that knows recbole-adaptssr's models and YAML defaults, and RecBole's for everything else."""

from __future__ import annotations

import os

from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_adaptssr import compat
from recbole_adaptssr.utils import PROPERTIES_DIR, get_model


# list-valued settings of ours; on the command line ``--finetune_from=[ssr,none]`` arrives as a string
LIST_KEYS = ("pretrain_stages", "finetune_from", "downstream_tasks", "augmentations", "task_split")


def as_list(key: str, value):
    """``[a, b]``, ``a,b``, ``a`` or a list -> list (numbers converted), so lists work unquoted on the CLI."""
    if value is None or isinstance(value, (list, tuple)):
        return None if value is None else list(value)
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    items = [piece.strip().strip("'\"") for piece in text.split(",") if piece.strip()]
    return [_number(piece) for piece in items]


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class Config(RecBoleConfig):
    """RecBole's ``Config`` with two additions (RecBole-GNN's pattern):

    * model names resolve through :func:`recbole_adaptssr.utils.get_model` (our package first, then RecBole);
    * after RecBole's own defaults, ``properties/overall.yaml``, ``properties/model/<Model>.yaml`` and
      ``properties/dataset/<dataset>.yaml`` of this project are loaded (in that order), so our models get their
      defaults from YAML; RecBole's precedence is kept: command line > config_dict > config files > ours;
    * list settings (``finetune_from``, ``pretrain_stages``, ...) may be written ``[a,b]`` or ``a,b`` on the
      command line (RecBole would keep ``[ssr,none]`` as one string);
    * the model type follows the stage: a model may declare ``model_type_for(train_stage)`` (AdaptSSR is
      SEQUENTIAL while pre-training and GENERAL on a downstream task), and any model run on a downstream task
      is GENERAL, so RecBole's loaders treat a sample as a task record and rank per user.
    """

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise KeyError(
                    "model need to be specified in at least one of the these ways: "
                    "[model variable, config file, config dict, command line] "
                )
        if isinstance(model, str):
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _set_default_parameters(self):
        super()._set_default_parameters()
        for key in LIST_KEYS:
            if key in self.final_config_dict:
                self.final_config_dict[key] = as_list(key, self.final_config_dict[key])

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for path in (
            os.path.join(PROPERTIES_DIR, "overall.yaml"),
            os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"),
            os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml"),
        ):
            if os.path.isfile(path):
                self._update_internal_config_dict(path)
        stage = self.external_config_dict.get("train_stage", self.internal_config_dict.get("train_stage"))
        if hasattr(model_class, "model_type_for"):
            self.internal_config_dict["MODEL_TYPE"] = model_class.model_type_for(stage)
        elif self.external_config_dict.get("downstream_task"):
            # RecBole's models on one of our tasks: samples are task records, ranked per user (GENERAL type)
            self.internal_config_dict["MODEL_TYPE"] = ModelType.GENERAL
        if self.internal_config_dict["MODEL_TYPE"] == ModelType.GENERAL and model_class.type == ModelType.SEQUENTIAL:
            # RecBole's sequential.yaml sets repeatable: True, whose sampler records no user history, so the
            # full-sort evaluation would mask nothing; a task record ranks items the user has not had yet
            self.internal_config_dict["repeatable"] = False
        compat.default_train_neg_sampling(
            self.internal_config_dict, self.external_config_dict, self.internal_config_dict["MODEL_TYPE"]
        )

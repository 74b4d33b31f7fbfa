"""``Config`` that knows recbole-adaptssr's models and YAML defaults, and RecBole's for everything else."""

from __future__ import annotations

import os

from recbole.config import Config as RecBoleConfig

from recbole_adaptssr import compat
from recbole_adaptssr.utils import PROPERTIES_DIR, get_model


class Config(RecBoleConfig):
    """RecBole's ``Config`` with two additions (RecBole-GNN's pattern):

    * model names resolve through :func:`recbole_adaptssr.utils.get_model` (our package first, then RecBole);
    * after RecBole's own defaults, ``properties/overall.yaml`` and ``properties/model/<Model>.yaml`` of this
      project are loaded, so our models get their defaults from YAML; the precedence of RecBole is kept:
      command line > config_dict > config files > model YAML > overall YAML.
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

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for path in (
            os.path.join(PROPERTIES_DIR, "overall.yaml"),
            os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"),
        ):
            if os.path.isfile(path):
                self._update_internal_config_dict(path)
        compat.default_train_neg_sampling(
            self.internal_config_dict, self.external_config_dict, self.internal_config_dict["MODEL_TYPE"]
        )

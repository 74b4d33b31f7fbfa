"""Model and trainer lookups, RecBole-GNN's extension pattern: our package first, then RecBole. Our models are
registered in :data:`recbole_adaptssr.model.MODELS` (module ``recbole_adaptssr.model.<name lower-cased>``); our
trainers are the classes ``<Model>Trainer`` of :mod:`recbole_adaptssr.trainer`. (The plug-in registries and the
YAML defaults are :mod:`recbole_adaptssr.plugins`.)"""

from __future__ import annotations

import importlib
import os

from recbole_adaptssr.model import MODELS
from recbole_adaptssr.plugins import did_you_mean
from recbole_adaptssr.setting_errors import SettingError


def get_model(model_name: str):
    """Return the model class called ``model_name``: ours if we define it, otherwise RecBole's."""
    ours = MODELS.find(model_name)
    if ours is not None:
        return ours
    from recbole.utils import get_model as recbole_get_model

    try:
        return recbole_get_model(model_name)
    except (ValueError, ImportError, AttributeError):  # RecBole's search imports optional packages (lightgbm, ...)
        MODELS.import_builtins()
        ours = sorted(MODELS)
        hint = did_you_mean(model_name, [*ours, *recbole_model_names()], fold_case=True)
        raise SettingError(f"unknown model {model_name!r}: neither ours ({ours}) nor RecBole's{hint}") from None


def recbole_model_names() -> list:
    """Class names of RecBole's models, read from its model modules' source without importing them."""
    import re

    import recbole.model

    base = os.path.dirname(recbole.model.__file__)
    names = []
    for folder in sorted(os.listdir(base)):
        path = os.path.join(base, folder)
        if not (folder.endswith("_recommender") and os.path.isdir(path)):
            continue
        for file in sorted(os.listdir(path)):
            if file.endswith(".py") and not file.startswith("_"):
                with open(os.path.join(path, file), encoding="utf-8") as f:
                    classes = re.findall(r"^class (\w+)\(", f.read(), flags=re.MULTILINE)
                names += [c for c in classes if c.lower() == file[:-3]]
    return names


def get_trainer(model_type, model_name: str):
    """Return ``<model_name>Trainer`` from our trainers if it exists, otherwise RecBole's choice."""
    trainers = importlib.import_module("recbole_adaptssr.trainer")
    if hasattr(trainers, model_name + "Trainer"):
        return getattr(trainers, model_name + "Trainer")
    from recbole.utils import get_trainer as recbole_get_trainer

    return recbole_get_trainer(model_type, model_name)

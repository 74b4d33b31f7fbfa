"""Name lookups that try recbole-adaptssr first and fall back to RecBole (RecBole-GNN's extension pattern)."""

from __future__ import annotations

import importlib
import os

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "properties")

# model name -> module holding the class of that name; trainers live in recbole_adaptssr.trainer
_MODELS = {"AdaptSSR": "recbole_adaptssr.model.adaptssr"}


def get_model(model_name: str):
    """Return the model class called ``model_name``: ours if we define it, otherwise RecBole's."""
    if model_name in _MODELS:
        return getattr(importlib.import_module(_MODELS[model_name]), model_name)
    try:
        return recbole_get_model(model_name)
    except (ValueError, ImportError) as error:  # RecBole's search imports optional packages (lightgbm, ...)
        raise ValueError(
            f"model {model_name!r} is neither ours ({sorted(_MODELS)}) nor RecBole's ({error})"
        ) from None


def get_trainer(model_type, model_name: str):
    """Return ``<model_name>Trainer`` from our trainers if it exists, otherwise RecBole's choice."""
    trainers = importlib.import_module("recbole_adaptssr.trainer")
    if hasattr(trainers, model_name + "Trainer"):
        return getattr(trainers, model_name + "Trainer")
    return recbole_get_trainer(model_type, model_name)

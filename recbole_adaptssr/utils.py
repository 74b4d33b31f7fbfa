"""Name lookups (RecBole-GNN's extension pattern: our package first, then RecBole) and the package's YAML defaults."""

from __future__ import annotations

import difflib
import importlib
import os

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")

# model name -> module holding the class of that name; trainers live in recbole_adaptssr.trainer
_MODELS = {"AdaptSSR": "recbole_adaptssr.model.adaptssr"}


def properties_file(*parts: str, required: bool = True) -> str | None:
    """Path of a YAML of defaults shipped in the package (``properties/<parts>``).

    A missing required file is an error: a package installed without its data must not run on RecBole's
    defaults without a word.
    """
    path = os.path.join(PROPERTIES_DIR, *parts)
    if os.path.isfile(path):
        return path
    if required:
        raise FileNotFoundError(
            f"default settings file {path} is missing: the recbole-adaptssr installation is incomplete "
            "(reinstall the package; its properties/*.yaml are package data)"
        )
    return None


def plugin_defaults_file(plugin_class: type, package: str, folder: str, what: str) -> str | None:
    """The YAML of a plug-in's defaults (a pretext task, a user model): its ``config_file`` if it names one (a
    missing file is an error naming it), ``properties/<folder>/<name>.yaml`` for a plug-in shipped in ``package``
    (required), else None."""
    if plugin_class.config_file is None:
        if plugin_class.__module__.startswith(package + "."):
            return properties_file(folder, f"{plugin_class.name}.yaml")
        return None
    if not os.path.isfile(plugin_class.config_file):
        raise FileNotFoundError(f"{what} {plugin_class.name!r}: its config_file {plugin_class.config_file} is missing")
    return plugin_class.config_file


def check_plugin_namespace(defaults: dict, prefix: str, owner: str, path: str) -> None:
    """A plug-in's YAML of defaults may only define keys ``<prefix>_...``; ``owner`` names the plug-in in the error."""
    foreign = [key for key in defaults if not key.startswith(f"{prefix}_")]
    if foreign:
        raise ValueError(f"{path}: {owner} may only define settings prefixed {prefix}_, found {foreign}")


def import_plugin(package: str, name) -> None:
    """Import ``<package>.<name>`` if such a module exists (plug-ins register themselves on import); a missing
    module is not an error here (the caller reports the unknown name), an import error inside it is."""
    if not (isinstance(name, str) and name.isidentifier()):
        return
    try:
        importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{package}.{name}":
            raise


def get_model(model_name: str):
    """Return the model class called ``model_name``: ours if we define it, otherwise RecBole's."""
    if model_name in _MODELS:
        return getattr(importlib.import_module(_MODELS[model_name]), model_name)
    from recbole.utils import get_model as recbole_get_model

    try:
        return recbole_get_model(model_name)
    except (ValueError, ImportError, AttributeError):  # RecBole's search imports optional packages (lightgbm, ...)
        known = {name.lower(): name for name in [*_MODELS, *recbole_model_names()]}
        close = [known[n] for n in difflib.get_close_matches(model_name.lower(), list(known), n=3, cutoff=0.6)]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {model_name!r}: neither ours ({sorted(_MODELS)}) nor RecBole's{hint}") from None


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

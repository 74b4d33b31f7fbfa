"""Models of recbole-adaptssr, registered in :data:`MODELS` by class name (module ``<name lower-cased>.py``)."""

from recbole_adaptssr.plugins import Registry

MODELS = Registry("model", package=__name__, module_name=str.lower, not_plugins=())

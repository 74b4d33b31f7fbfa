"""Pre-training (pretext) tasks, one module each, found by name: see :mod:`recbole_adaptssr.pretext.base`."""

from recbole_adaptssr.pretext.base import PretextTask, StageSettings, get_pretext_task

__all__ = ["PretextTask", "StageSettings", "get_pretext_task"]

"""Downstream task kinds and their heads, one module each: see :mod:`recbole_adaptssr.downstream.base`."""

from recbole_adaptssr.downstream.base import TaskHead, TaskKind, get_task_kind

__all__ = ["TaskHead", "TaskKind", "get_task_kind"]

"""Log files: one per run (the command's), one per unit, through RecBole's logger (the root logger).

* :func:`init_run_logger`: RecBole's console (coloured) and a plain file ``<run folder>/<folder name>.log``,
  replacing the handlers this module installed before.
  RecBole's ``init_logger`` would name its file after the second and a hash of the settings under ``./log/`` and
  do nothing once the root logger has handlers.
* :func:`unit_log`: while a unit runs, ``<unit folder>/<run folder name>--<unit id>.log``. It is the root logger's
  first file handler, and RecBole's ``Trainer`` names its TensorBoard writer after that file
  (``get_tensorboard``: ``./log_tensorboard/<file name up to its first dot>``), so every unit that trains
  draws into a TensorBoard run of its own, ``log_tensorboard/<run folder name>--<unit id>/``. In the command's
  process (the serial executor) the run's handlers keep receiving everything; in a worker process or Ray task the
  unit's file receives everything and the console only warnings and errors, marked with the unit's title.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager

FILE_FORMAT, FILE_DATES = "%(asctime)-15s %(levelname)s  %(message)s", "%a %d %b %Y %H:%M:%S"
CONSOLE_FORMAT, CONSOLE_DATES = "%(log_color)s%(asctime)-15s %(levelname)s  %(message)s", "%d %b %H:%M"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
          "critical": logging.CRITICAL}
MARK = "_recbole_adaptssr_handler"  # the handlers a run logger installed (replaced by the next one)
_ANSI = re.compile(r"\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])")
_NAME = re.compile(r"[^A-Za-z0-9_-]")


class PlainFormatter(logging.Formatter):
    """A formatter that leaves out the colour codes of RecBole's ``set_color`` (the record is not changed, so a
    console handler after it still shows them)."""

    def format(self, record):
        return _ANSI.sub("", super().format(record))


def log_level(state) -> int:
    """RecBole's ``state`` setting (info, debug, warning, error, critical; default info) as a logging level."""
    return LEVELS.get(str(state or "info").lower(), logging.INFO)


def init_run_logger(run_dir: str, state="info", suffix: str = "") -> str:
    """Log to the console and to ``<run_dir>/<folder name><suffix>.log`` at the level of ``state``; return the
    file's path (see the module docstring)."""
    import colorlog
    from recbole.utils.logger import log_colors_config

    level = log_level(state)
    path = os.path.join(run_dir, os.path.basename(os.path.normpath(run_dir)) + suffix + ".log")
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(PlainFormatter(FILE_FORMAT, FILE_DATES))
    console = logging.StreamHandler()
    console.setFormatter(colorlog.ColoredFormatter(CONSOLE_FORMAT, CONSOLE_DATES, log_colors=log_colors_config))
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, MARK, False):
            root.removeHandler(handler)
            handler.close()
    for handler in (file_handler, console):
        handler.setLevel(level)
        setattr(handler, MARK, True)
    root.handlers[:0] = [file_handler, console]  # the file first: RecBole names TensorBoard runs after it
    root.setLevel(level)
    return path


def unit_log_name(run_dir: str, unit_id: str) -> str:
    """``<run folder name>--<unit id>`` with anything but letters, digits, '_' and '-' replaced by '_' (no dot:
    RecBole cuts the TensorBoard run's name at the first one)."""
    return _NAME.sub("_", f"{os.path.basename(os.path.normpath(run_dir))}--{unit_id}")


@contextmanager
def unit_log(path: str | None, level: int, isolated: bool, label: str):
    """Log into ``path`` while the block runs (see the module docstring). ``isolated``: this process runs units
    only (a worker process, a Ray task): its other handlers are set aside meanwhile, and warnings and errors go to
    the console marked with ``label``. ``path`` None: no file of the unit's own (a process that only follows
    another, under torch.distributed)."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    if path is None:
        yield path
        return
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(PlainFormatter(FILE_FORMAT, FILE_DATES))
    file_handler.setLevel(level)
    if isolated:
        console = logging.StreamHandler()
        marked = label.replace("%", "%%")  # a title is text, not a format
        console.setFormatter(PlainFormatter(f"%(asctime)s %(levelname)s [{marked}]  %(message)s", "%d %b %H:%M"))
        console.setLevel(max(level, logging.WARNING))
        root.handlers = [file_handler, console]
    else:
        root.handlers = [file_handler, *saved_handlers]
    root.setLevel(level)
    try:
        yield path
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        file_handler.close()

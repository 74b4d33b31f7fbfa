"""RecBole's logger (coloured console, plain file), writing into the run's own folder.

RecBole's ``init_logger`` names its file after the model, data set, second and a hash of the settings under
``./log/``, so two identical runs started in the same second share one file; and it uses ``logging.basicConfig``,
which does nothing once the root logger has handlers. Here the file is ``<run folder>/<run id>.log`` and the
handlers this module installed before are replaced. RecBole's tensorboard writer is named after that file, so
it lands in ``log_tensorboard/<run id>/``, also per run.
"""

from __future__ import annotations

import logging
import os

import colorlog
from recbole.utils.logger import RemoveColorFilter, log_colors_config

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}
_OURS = "_recbole_adaptssr_handler"


def init_run_logger(config, run_dir: str) -> str:
    """Log to the console and to ``run_dir/<folder name>.log``; return the log file's path."""
    level = _LEVELS.get(str(config["state"] or "info").lower(), logging.INFO)
    from recbole_adaptssr import distributed

    # under torch.distributed, ranks other than 0 (which log errors only) write a file of their own
    suffix = f".rank{distributed.rank()}" if not distributed.is_main_process() else ""
    path = os.path.join(run_dir, os.path.basename(os.path.normpath(run_dir)) + suffix + ".log")
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)-15s %(levelname)s  %(message)s", "%a %d %b %Y %H:%M:%S"))
    file_handler.addFilter(RemoveColorFilter())
    console = logging.StreamHandler()
    console.setFormatter(colorlog.ColoredFormatter("%(log_color)s%(asctime)-15s %(levelname)s  %(message)s",
                                                   "%d %b %H:%M", log_colors=log_colors_config))
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
            handler.close()
    for handler in (console, file_handler):
        handler.setLevel(level)
        setattr(handler, _OURS, True)
    # first in the list: RecBole names the tensorboard folder after the first handler with a file
    root.handlers[:0] = [file_handler, console]
    root.setLevel(level)
    return path

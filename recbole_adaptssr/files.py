"""File-system helpers shared by the writers of checkpoints and results (no torch, no RecBole)."""

from __future__ import annotations

import os


def fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform or file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

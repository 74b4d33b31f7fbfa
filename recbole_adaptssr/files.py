"""File-system helpers shared by the writers of checkpoints and results (no torch, no RecBole)."""

from __future__ import annotations

import os
import secrets


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


def atomic_write(path, write, binary: bool = True) -> str:
    """Write a file through ``write(f)`` into a temporary file beside ``path`` (``.<name>.tmp-<pid>-<random>``),
    flush it to disk, rename it over ``path`` and fsync the folder. On any failure (Ctrl-C included) the temporary
    file is removed, the previous file is intact and the original exception propagates; returns ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "xb") if binary else open(tmp, "x", encoding="utf-8", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    fsync_folder(folder)
    return path

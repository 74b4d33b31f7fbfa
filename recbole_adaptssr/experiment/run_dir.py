"""Every run has its own folder, so checkpoints, logs, tensorboard and results of concurrent runs never collide."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time


def run_id(model: str, dataset: str, settings: dict) -> str:
    """``<model>-<dataset>-<YYYYmmdd-HHMMSS>-<hash of the settings>-<pid>``: readable, sortable and unique per
    process (two identical commands started in the same second still differ by pid)."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:6]
    name = f"{model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{digest}-{os.getpid()}"
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def new_run_dir(root: str, model: str, dataset: str, settings: dict) -> str:
    """Create and return a fresh folder ``root/<run id>`` (never an existing one)."""
    base = os.path.join(root, run_id(model, dataset, settings))
    for attempt in range(1000):
        path = base if attempt == 0 else f"{base}-{attempt}"
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a fresh run folder under {root}")

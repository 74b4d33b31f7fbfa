"""Shared fixtures: a tiny atomic data set with learnable structure, and an isolated working directory."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import recbole_adaptssr

recbole_adaptssr.setup()  # compatibility shims and the Acc metric, before any RecBole use in tests


def write_tiny_dataset(root, name="tiny", n_users=120, n_items=60, n_clusters=4, min_len=6, max_len=24, seed=0):
    """Write ``root/name/name.inter``: each user draws behaviours mostly from its cluster's items, so user
    representations have something to learn. Returns the data set folder."""
    rng = np.random.RandomState(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    per_cluster = n_items // n_clusters
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(1, n_users + 1):
        cluster = user % n_clusters
        length = rng.randint(min_len, max_len + 1)
        for t in range(length):
            if rng.rand() < 0.85:
                item = cluster * per_cluster + rng.randint(per_cluster) + 1
            else:
                item = rng.randint(n_items) + 1
            lines.append(f"u{user}\ti{item}\t{t}")
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(autouse=True)
def _isolated_run(tmp_path, monkeypatch):
    """RecBole reads ``--key=value`` from sys.argv and writes log/ and saved/ into the cwd: isolate both.
    Tiny models run faster on one torch thread (measured ~10x on a busy 2-core machine)."""
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_tiny_dataset(root)
    return root


@pytest.fixture
def tiny_config(tiny_data_path, tmp_path):
    """Settings for fast runs on the tiny data set (CPU, small model, no progress bars)."""
    return {
        "data_path": str(tiny_data_path),
        "checkpoint_dir": str(tmp_path / "saved"),
        "device": "cpu",
        "use_gpu": False,
        "show_progress": False,
        "MAX_ITEM_LIST_LENGTH": 20,
        "hidden_size": 32,
        "inner_size": 64,
        "train_batch_size": 32,
        "eval_batch_size": 64,
        "learning_rate": 0.001,
        "mlm_epochs": 2,
        "ssr_epochs": 2,
        "seed": 2023,
        "state": "WARNING",
        "torch_threads": 1,
        "stopping_steps": 0,  # patience in epochs only on this tiny data (a few steps an epoch)
    }


@pytest.fixture
def task_data(tmp_path):
    """A tiny converted data set with a multiclass and a recommendation task (tests/task_data.py)."""
    from task_data import write_task_dataset

    return write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "rec"), n_users=40, n_targets=16)


@pytest.fixture
def recbole_ready():
    """RecBole usable on numpy 2 / pandas 3: the compatibility shims (applied when this conftest imported
    recbole_adaptssr) are in place."""
    from recbole_adaptssr import compat

    compat.apply()
    return compat

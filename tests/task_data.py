"""Tiny converted data sets (README "Data layout") for the downstream-task tests.

``write_task_dataset(root, name, ...)`` writes ``root/name/`` with

* ``name.inter``  the behaviour log (``user_id:token item_id:token timestamp:float``) of clustered users:
  a user of cluster c draws most behaviours from c's block of items, so every label below is learnable;
* ``name.cls``    multiclass, ``label:token`` = the cluster's label among numeric tokens ``CLS_LABELS``
  (chosen so that string order and numeric order differ: "10" < "2" as strings);
* ``name.bin``    binary, ``label:token`` "M" for clusters 0 and 1, "F" otherwise;
* ``name.cvr``    (user, target, 0/1): ``cvr_per_user`` distinct targets per user, label 1 iff the target's
  group is the user's cluster (every user gets at least one 0 and one 1);
* ``name.rec``    (user, positive target): ``rec_per_user`` distinct targets from the cluster's target group;
* ``name.tasks.json`` the manifest ``{"tasks": {task: {kind, metric, file, num_samples, num_labels|num_targets}}}``.

Targets (``t1``...) are a separate item domain. The returned :class:`TaskData` keeps everything written, in the
original tokens, so tests compute their expectations without the code under test.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

CLS_LABELS = ("10", "2", "7", "1")  # label of cluster 0..3; numeric order 1 < 2 < 7 < 10
TASK_KINDS = {"cls": "multiclass", "bin": "binary", "cvr": "cvr", "rec": "recommendation"}
TASK_METRICS = {"multiclass": "Acc", "binary": "AUC", "cvr": "AUC", "recommendation": "NDCG@10"}


@dataclass
class TaskData:
    root: Path
    name: str
    sequences: dict  # user token -> [(item token, time)] in time order
    clusters: dict  # user token -> cluster
    labels: dict = field(default_factory=dict)  # task -> {user: label token}  (cls, bin)
    cvr: list = field(default_factory=list)  # [(user, target, 0/1)]
    rec: list = field(default_factory=list)  # [(user, target)]
    inter_rows: list = field(default_factory=list)  # [(user, item, time)] in file order

    @property
    def folder(self) -> Path:
        return self.root / self.name

    @property
    def users(self) -> list:
        return list(self.sequences)

    def tokens_in_time_order(self, user) -> list:
        return [token for token, _ in self.sequences[user]]


def write_atomic(path, header, rows) -> None:
    """A tab-separated atomic file: ``header`` (list of ``field:type``) then one line per row."""
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def generate_users(n_users=48, n_items=32, n_clusters=4, min_len=4, max_len=12, seed=0, item_token=None):
    """Clustered behaviour sequences: ``{user: [(token, time)]}`` (time order) and ``{user: cluster}``."""
    rng = np.random.RandomState(seed)
    item_token = item_token or (lambda i: f"i{i}")
    per_cluster = n_items // n_clusters
    sequences, clusters = {}, {}
    for u in range(1, n_users + 1):
        user = f"u{u}"
        cluster = u % n_clusters
        length = rng.randint(min_len, max_len + 1)
        times = np.sort(rng.choice(np.arange(1000, 1000 + 10 * max_len), size=length, replace=False))
        seq = []
        for t in times:
            if rng.rand() < 0.85:
                item = cluster * per_cluster + rng.randint(per_cluster) + 1
            else:
                item = rng.randint(n_items) + 1
            seq.append((item_token(item), int(t)))
        sequences[user], clusters[user] = seq, cluster
    return sequences, clusters


def order_rows(sequences, row_order="time", seed=0) -> list:
    """Behaviour rows ``(user, item, time)`` in a file order: ``time`` (grouped by user, chronological),
    ``reversed`` (whole file reversed: other users and other tokens come first), ``shuffled`` (random)."""
    rows = [(user, token, t) for user, seq in sequences.items() for token, t in seq]
    if row_order == "reversed":
        rows = rows[::-1]
    elif row_order == "shuffled":
        rows = [rows[i] for i in np.random.RandomState(seed + 1).permutation(len(rows))]
    elif row_order != "time":
        raise ValueError(row_order)
    return rows


def write_task_dataset(root, name="tt", n_users=48, n_items=32, n_clusters=4, min_len=4, max_len=12, n_targets=16,
                       cvr_per_user=4, rec_per_user=3, seed=0, tasks=("cls", "bin", "cvr", "rec"), row_order="time",
                       sequences=None, clusters=None, item_token=None) -> TaskData:
    """Write ``root/name/`` (see the module docstring); ``sequences``/``clusters`` reuse another data set's users."""
    root = Path(root)
    if sequences is None:
        sequences, clusters = generate_users(n_users, n_items, n_clusters, min_len, max_len, seed, item_token)
    data = TaskData(root=root, name=name, sequences=sequences, clusters=clusters)
    folder = data.folder
    folder.mkdir(parents=True, exist_ok=True)
    data.inter_rows = order_rows(sequences, row_order, seed)
    write_atomic(folder / f"{name}.inter", ["user_id:token", "item_id:token", "timestamp:float"], data.inter_rows)

    rng = np.random.RandomState(seed + 7)
    n_groups = max(clusters.values()) + 1
    group_size = n_targets // n_groups
    manifest = {}
    for task in tasks:
        kind = TASK_KINDS[task]
        entry = {"kind": kind, "metric": TASK_METRICS[kind], "file": f"{name}.{task}"}
        if task in ("cls", "bin"):
            labels = {u: (CLS_LABELS[c % len(CLS_LABELS)] if task == "cls" else ("M" if c in (0, 1) else "F"))
                      for u, c in clusters.items()}
            data.labels[task] = labels
            write_atomic(folder / f"{name}.{task}", ["user_id:token", "label:token"], labels.items())
            entry.update(num_samples=len(labels), num_labels=len(set(labels.values())))
        elif task == "cvr":
            for u, c in clusters.items():
                own = [f"t{c * group_size + j + 1}" for j in range(group_size)]
                other = [f"t{j + 1}" for j in range(n_targets) if f"t{j + 1}" not in own]
                picks = list(rng.choice(own, cvr_per_user // 2, replace=False)) + list(
                    rng.choice(other, cvr_per_user - cvr_per_user // 2, replace=False))
                data.cvr += [(u, t, int(t in own)) for t in picks]
            write_atomic(folder / f"{name}.cvr", ["user_id:token", "target_id:token", "label:float"], data.cvr)
            entry.update(num_samples=len(data.cvr), num_targets=len({t for _, t, _ in data.cvr}))
        else:
            for u, c in clusters.items():
                own = [f"t{c * group_size + j + 1}" for j in range(group_size)]
                data.rec += [(u, t) for t in rng.choice(own, rec_per_user, replace=False)]
            write_atomic(folder / f"{name}.rec", ["user_id:token", "target_id:token"], data.rec)
            entry.update(num_samples=len(data.rec), num_targets=len({t for _, t in data.rec}))
        manifest[task] = entry
    (folder / f"{name}.tasks.json").write_text(json.dumps({"tasks": manifest}, indent=2), encoding="utf-8")
    return data


def base_config(data: TaskData, tmp_path, **extra) -> dict:
    """Fast CPU settings for runs on a tiny task data set."""
    config = {
        "data_path": str(data.root),
        "checkpoint_dir": str(Path(tmp_path) / "saved"),
        "device": "cpu",
        "use_gpu": False,
        "show_progress": False,
        "state": "WARNING",
        "MAX_ITEM_LIST_LENGTH": 10,
        "hidden_size": 16,
        "inner_size": 32,
        "n_layers": 1,
        "head_hidden_size": 16,
        "train_batch_size": 16,
        "eval_batch_size": 64,
        "learning_rate": 0.005,
        "seed": 2023,
        "reproducibility": True,
        "torch_threads": 1,
        # short fine-tuning on 2-step epochs (the package's 200-epoch cap and 100 steps of patience are for real data)
        "finetune_epochs": 20,
        "finetune_stopping_step": 3,
        "stopping_steps": 0,
    }
    config.update(extra)
    return config


def stage_checkpoint(run_dir, stage: str, name: str | None = None) -> Path:
    """The file ``name`` (default ``<stage>.pth``) of ``stage`` in a run folder: every pre-training stage is a unit
    of its own, ``units/pretrain_stage-<id>/pretrain/``; one of the run's units holds it."""
    (path,) = Path(run_dir).glob(f"units/pretrain_stage-*/pretrain/{name or stage + '.pth'}")
    return path


def unit_files(run_dir, kind: str, pattern: str = "*.pth") -> list:
    """The files matching ``pattern`` in the folders of a run's units of ``kind``."""
    return sorted(Path(run_dir).glob(f"units/{kind}-*/{pattern}"))


@contextmanager
def one_torch_thread():
    """One intra-op thread while the tests train: on a shared 2-core machine torch's default thread pool
    oversubscribes the cores and a tiny fine-tune gets ~10x slower (measured: 55 s -> 4 s for the pipeline)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

#!/usr/bin/env python
"""Benchmark the all-ranking evaluation of a fine-tuned AdaptSSR on a recommendation task: users/s through
RecBole's full-sort evaluation path exactly as our TaskTrainer runs it (FullSortEvalDataLoader, history masking,
the collector's top-k, RecBole's evaluator), and peak GPU memory.

  python scripts/bench_finetune.py --workdir /tmp/ft-bench --users 250000 --device cuda --json ft.json
  python scripts/bench_finetune.py --workdir /tmp/ft-bench --users 20000 --device cpu        # a quick CPU run

The script writes a synthetic converted data set (``NAME.inter``, ``NAME.rec``, ``NAME.tasks.json``; reused when
its recorded parameters match): ``--users`` users with ``--min-len``..``--max-len`` behaviours over ``--items``
behaviour items (Zipf-like popularity) and ``--targets-per-user`` distinct positive targets among ``--targets``
target items (17,879: the paper's click task). The task is split over users (6:2:2) as a pipeline splits it; the
model is AdaptSSR built as ``finetune`` builds it, trained for ``--finetune-epochs`` epochs (0: as initialised;
the cost of evaluation does not depend on the weights). Then ``TaskTrainer.evaluate`` runs on the valid split once
(warm-up) and ``--repeat`` times on the test split; reported: test users/s (best and median), the time
taken by the batches alone (one pass over RecBole's loader, and one over the array-built batches that TaskTrainer
uses, recbole_adaptssr/evaluation/full_sort.py; ``--slow-batches`` evaluates with RecBole's), the metrics
(identical over repeats) and peak GPU memory allocated/reserved during evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

NAME = "ftbench"


def generate(folder: Path, users: int, items: int, targets: int, per_user: float, min_len: int, max_len: int,
             seed: int) -> None:
    """Write the synthetic data set into ``folder`` (see the module docstring)."""
    params = dict(users=users, items=items, targets=targets, per_user=per_user, min_len=min_len, max_len=max_len,
                  seed=seed)
    marker = folder / "generated.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, size=users)
    u = rng.random(int(lengths.sum()))
    ranks = (np.power(items + 10.0, u) * np.power(10.0, 1.0 - u) - 10.0).astype(np.int64).clip(0, items - 1)
    item_ids = (rng.permutation(items) + 1)[ranks]
    user_of = np.repeat(np.arange(1, users + 1), lengths)
    position = np.arange(len(user_of)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    with open(folder / f"{NAME}.inter", "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        step = 1 << 20
        for start in range(0, len(user_of), step):
            part = slice(start, start + step)
            f.write("".join(f"u{a}\ti{b}\t{c}\n" for a, b, c in
                            zip(user_of[part].tolist(), item_ids[part].tolist(), position[part].tolist())))
    n_targets = np.maximum(1, rng.poisson(per_user, size=users))
    rows = []
    for user, n in enumerate(n_targets.tolist(), 1):
        picks = rng.choice(targets, size=min(n, targets), replace=False) + 1
        rows.extend(f"u{user}\tt{t}\n" for t in picks.tolist())
    with open(folder / f"{NAME}.rec", "w", encoding="utf-8") as f:
        f.write("user_id:token\ttarget_id:token\n")
        f.write("".join(rows))
    n_used = len({r.split("\t")[1] for r in rows})
    manifest = {"tasks": {"rec": {"kind": "recommendation", "metric": "NDCG@10", "file": f"{NAME}.rec",
                                  "num_samples": len(rows), "num_targets": n_used}}}
    (folder / f"{NAME}.tasks.json").write_text(json.dumps(manifest, indent=2))
    marker.write_text(json.dumps(params))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ft-bench"))
    ap.add_argument("--users", type=int, default=250_000, help="users of the task (the test split holds 20%%)")
    ap.add_argument("--items", type=int, default=645_972, help="behaviour items (TTL: 645,972)")
    ap.add_argument("--targets", type=int, default=17_879, help="target items (TTL click: 17,879)")
    ap.add_argument("--targets-per-user", type=float, default=1.6)
    ap.add_argument("--min-len", type=int, default=10)
    ap.add_argument("--max-len", type=int, default=100, help="also MAX_ITEM_LIST_LENGTH")
    ap.add_argument("--eval-users-per-batch", type=int, default=256, help="eval_batch_size in users (default ours)")
    ap.add_argument("--finetune-epochs", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--slow-batches", action="store_true",
                    help="full_sort_fast_batches: False (RecBole's own batch building, for comparison)")
    ap.add_argument("--compare-slow", action="store_true",
                    help="then evaluate --repeat times more with RecBole's own batch building (same process)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    generate(a.workdir / NAME, a.users, a.items, a.targets, a.targets_per_user, a.min_len, a.max_len, a.seed)
    generate_s = time.perf_counter() - t0

    import torch

    import recbole_adaptssr
    from recbole_adaptssr.config import Config
    from recbole_adaptssr.data.task_dataset import TaskData
    from recbole_adaptssr.data.utils import create_dataset
    from recbole_adaptssr.evaluation.full_sort import fast_full_sort
    from recbole_adaptssr.experiment.finetuning import prepare_loaders, run_overrides
    from recbole_adaptssr.trainer import TaskTrainer
    from recbole_adaptssr.utils import get_model

    recbole_adaptssr.setup()
    cuda = a.device.startswith("cuda")
    config = Config(model="AdaptSSR", dataset=NAME, config_dict={
        "data_path": str(a.workdir), "device": a.device, "use_gpu": cuda, "state": "WARNING", "show_progress": False,
        "MAX_ITEM_LIST_LENGTH": a.max_len, "eval_batch_size": a.eval_users_per_batch, "seed": a.seed,
        "finetune_epochs": max(a.finetune_epochs, 1), "checkpoint_dir": str(a.workdir / "saved"),
        "full_sort_fast_batches": not a.slow_batches})
    task_data = TaskData(config["data_path"], NAME)
    cfg = config.derive(**run_overrides(config, "rec", task_data.kind("rec"), a.seed, task_data,
                                        str(a.workdir / "saved")))
    t = time.perf_counter()
    data = create_dataset(cfg, None, task_data)
    train_data, valid_data, test_data = prepare_loaders(cfg, data)
    load_s = time.perf_counter() - t
    net = get_model("AdaptSSR")(cfg, train_data._dataset).to(cfg["device"])
    trainer = TaskTrainer(cfg, net)
    trainer.saved_model_file = str(a.workdir / "saved" / "bench.pth")
    train_s = None
    if a.finetune_epochs:
        t = time.perf_counter()
        for epoch in range(a.finetune_epochs):
            trainer._train_epoch(train_data, epoch, show_progress=False)
        train_s = time.perf_counter() - t

    def sync():
        if cuda:
            torch.cuda.synchronize()

    trainer.evaluate(valid_data, load_best_model=False)  # warm-up: CUDA context, kernels, the item tensor
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, results = [], []
    for _ in range(a.repeat):
        t = time.perf_counter()
        results.append(trainer.evaluate(test_data, load_best_model=False))
        sync()
        times.append(time.perf_counter() - t)
    slow_times = []
    if a.compare_slow and not a.slow_batches:
        cfg["full_sort_fast_batches"] = False
        for _ in range(a.repeat):
            t = time.perf_counter()
            results.append(trainer.evaluate(test_data, load_best_model=False))
            sync()
            slow_times.append(time.perf_counter() - t)
        cfg["full_sort_fast_batches"] = True
    t = time.perf_counter()
    for _ in test_data:  # RecBole's loader alone: batches, history indices, the user features joined
        pass
    loader_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in fast_full_sort(test_data):  # the same batches, cut from arrays (evaluation/full_sort.py)
        pass
    fast_loader_s = time.perf_counter() - t
    n_test = int(test_data._dataset.inter_feat[test_data._dataset.uid_field].unique().numel())
    best = min(times)
    res = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"torch {torch.__version__}",
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "users": a.users, "test_users": n_test, "target_items": data.num_targets() - 1,
        "behaviour_items": data.behaviour_vocabulary_size() - 1, "max_len": a.max_len,
        "eval_users_per_batch": a.eval_users_per_batch, "test_batches": len(test_data),
        "generate_s": round(generate_s, 1), "load_and_split_s": round(load_s, 1),
        "finetune_epochs": a.finetune_epochs, "finetune_s": None if train_s is None else round(train_s, 1),
        "eval_s": [round(x, 3) for x in times],
        "users_per_s_best": round(n_test / best), "users_per_s_median": round(n_test / statistics.median(times)),
        "full_sort_fast_batches": not a.slow_batches,
        "slow_batches_eval_s": [round(x, 3) for x in slow_times],
        "slow_batches_users_per_s_best": round(n_test / min(slow_times)) if slow_times else None,
        "recbole_loader_only_s": round(loader_s, 3), "fast_batches_only_s": round(fast_loader_s, 3),
        "metrics": {k: float(v) for k, v in results[-1].items()},
        "metrics_identical_over_repeats": all(r == results[0] for r in results),
    }
    if cuda:
        res["peak_gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        res["peak_gpu_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    print(json.dumps(res, indent=2))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

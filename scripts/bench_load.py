#!/usr/bin/env python
"""Benchmark loading: from the atomic files of a converted data set to the first pre-training step, with and
without the sequence cache (recbole_adaptssr/data/sequence_cache.py).

  python scripts/bench_load.py --workdir /tmp/load-bench --users 200000                 # all three modes
  python scripts/bench_load.py --workdir /tmp/load-bench --users 1470149 --modes build,cached

Data: TTL-format files from scripts/generate_ttl.py, converted with ``python -m dataset_converters ttl`` (both
kept in WORKDIR and reused when their recorded size matches). Each mode runs in a fresh child process, the way a
pipeline starts, and reports its wall time from the start of the child (imports included), the time of each
phase and its peak resident memory (``ru_maxrss`` from ``os.wait4``):

* ``nocache``: ``sequence_cache: False``, RecBole's own parser;
* ``build``: the cache file is deleted first, so this run reads the log with pyarrow and writes the cache;
* ``cached``: the cache exists (the usual case from the second run of a data set on).

Phases: ``dataset`` (create_dataset: reading, remapping), ``build`` (one row per user, 90/10 split),
``first_batch`` (RecBole's TrainDataLoader, first batch), ``model`` (AdaptSSR built), ``first_step`` (one MLM
step: loss, backward, Adam, on the CPU: its full softmax over 645,972 items takes ~25 s on 2 cores, a few ms on a
GPU). ``to_first_batch_and_model_s`` is the loading figure: process start to data, first batch and model ready.
The loss of the first step is the same in every mode (the same data, the same seed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTED = time.perf_counter()


def child(mode: str, data_path: str, name: str, max_len: int, step: bool = True) -> dict:
    import torch

    import recbole_adaptssr
    from recbole.data.dataloader import TrainDataLoader
    from recbole.utils import init_seed

    from recbole_adaptssr.config import Config
    from recbole_adaptssr.data import sequence_cache
    from recbole_adaptssr.data.utils import create_dataset
    from recbole_adaptssr.utils import get_model

    recbole_adaptssr.setup()
    phases = {"imports": time.perf_counter() - STARTED}
    config = Config(model="AdaptSSR", dataset=name, config_dict={
        "data_path": data_path, "sequence_cache": mode != "nocache", "MAX_ITEM_LIST_LENGTH": max_len,
        "device": "cpu", "use_gpu": False, "state": "WARNING", "show_progress": False, "train_stage": "mlm"})
    inter = os.path.join(config["data_path"], f"{name}.inter")
    if mode == "build":
        Path(sequence_cache.cache_path(inter)).unlink(missing_ok=True)

    def phase(key, start):
        phases[key] = time.perf_counter() - start
        return time.perf_counter()

    t = time.perf_counter()
    dataset = create_dataset(config)
    t = phase("dataset", t)
    train_set, valid_set = dataset.build()
    t = phase("build", t)
    loader = TrainDataLoader(config, train_set, None, shuffle=True)
    batch = next(iter(loader))
    t = phase("first_batch", t)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("AdaptSSR")(config, train_set)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    t = phase("model", t)
    ready = time.perf_counter() - STARTED  # data and model ready: what the sequence cache is about
    loss = float("nan")
    if step:
        loss = model.calculate_loss(batch)
        loss = sum(loss) if isinstance(loss, tuple) else loss
        loss.backward()
        optimizer.step()
        phase("first_step", t)
    return {"mode": mode, "users": dataset.user_num - 1, "items": dataset.item_num - 1,
            "behaviours": int(dataset.behaviour_count), "train_sequences": len(train_set),
            "phases_s": {k: round(v, 2) for k, v in phases.items()},
            "to_first_batch_and_model_s": round(ready, 2), "to_first_step_s": round(time.perf_counter() - STARTED, 2),
            "loss": float(loss)}


def prepare(workdir: Path, users: int, seed: int, tasks=("age",)) -> Path:
    """``users`` generated TTL users converted with ``tasks`` into ``workdir/data/ttl`` (kept, and reused while the
    parameters are the same). Also :mod:`bench_data_checks`'s."""
    raw, out = workdir / "raw", workdir / "data"
    marker = workdir / "prepared.json"
    params = {"users": users, "seed": seed, "tasks": list(tasks)}
    if marker.exists() and json.loads(marker.read_text()).get("params") == params and (out / "ttl").is_dir():
        return out
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    print(f"generating {users:,} TTL users ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_ttl.py"), "--output", str(raw), "--users",
                    str(users), "--seed", str(seed), "--quiet"], check=True)
    print("converting ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "dataset_converters", "ttl", "--input", str(raw), "--output", str(out),
                    "--no-progress", "--tasks", ",".join(tasks)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    shutil.rmtree(raw, ignore_errors=True)  # only the converted data set is needed from here
    marker.write_text(json.dumps({"params": params}))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/load-bench"))
    ap.add_argument("--users", type=int, default=200_000, help="TTL users to generate (release: 1470149)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-len", type=int, default=100)
    ap.add_argument("--modes", default="nocache,build,cached", help="comma-separated: nocache, build, cached")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--converted", type=Path, help="use this folder's converted data set ttl/ instead of generating")
    ap.add_argument("--no-step", action="store_true", help="stop once data, first batch and model are ready")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.data, "ttl", a.max_len, not a.no_step)))
        return 0

    a.workdir.mkdir(parents=True, exist_ok=True)
    data = a.converted if a.converted else prepare(a.workdir, a.users, a.seed)
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
               "users": a.users, "runs": []}
    for mode in a.modes.split(","):
        cmd = [sys.executable, __file__, "--child", mode, "--data", str(data), "--max-len", str(a.max_len)]
        cmd += ["--no-step"] if a.no_step else []
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=a.workdir, stdout=subprocess.PIPE)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        if os.waitstatus_to_exitcode(status) != 0:
            print(f"mode {mode} failed", file=sys.stderr)
            return 1
        run = json.loads(out.decode().strip().splitlines()[-1])
        run.update(process_wall_s=round(wall, 2), peak_rss_mib=round(usage.ru_maxrss / 1024, 1))
        results["runs"].append(run)
        print(json.dumps(run), flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

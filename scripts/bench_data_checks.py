#!/usr/bin/env python
"""Benchmark the data check that runs before anything trains (recbole_adaptssr/data/validation.py): the behaviour
log and every task file of a TTL-format data set, against its manifest.

  python scripts/bench_data_checks.py --workdir /tmp/check-bench --users 200000
  python scripts/bench_data_checks.py --workdir /tmp/check-bench --users 1470149     # the release's size

Data: TTL-format files from scripts/generate_ttl.py, converted with ``python -m dataset_converters ttl`` (all four
tasks: age, lifestatus, click, like), kept in WORKDIR and reused when their recorded size matches. Each run is a
fresh child process, as a pipeline starts, timed from the start of its check (imports and the Config excluded):

* ``first``: the digest records beside the sequence cache are deleted first, so each file is hashed once
  (BLAKE2b, the data fingerprint) and read by the check (the first command on a data set, or on changed files);
* ``again``: a second process on the same files: digests and verdicts come from the records, no file is read.

It reports the wall time, the CPU time and the peak resident memory of each child (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench_load import prepare  # scripts/ is on the path of a script run from it

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["age", "lifestatus", "click", "like"]


def child(data_path: str, name: str) -> dict:
    import recbole_adaptssr
    from recbole_adaptssr.config import Config
    from recbole_adaptssr.data.task_dataset import TaskData
    from recbole_adaptssr.data.validation import validate_data

    recbole_adaptssr.setup()
    config = Config(model="AdaptSSR", dataset=name, config_dict={"data_path": data_path, "state": "ERROR",
                                                                 "device": "cpu", "use_gpu": False})
    task_data = TaskData(config["data_path"], name)
    started, cpu = time.perf_counter(), time.process_time()
    report = validate_data(config, task_data, TASKS)
    return {"seconds": round(time.perf_counter() - started, 2), "cpu_seconds": round(time.process_time() - cpu, 2),
            "behaviours": report["behaviour_log"]["rows"], "users": report["behaviour_log"]["users"],
            "task_rows": {t: r["rows"] for t, r in report["tasks"].items()}}


def run_child(data: Path, mode: str) -> dict:
    if mode == "first":
        for path in glob.glob(str(data / ".adaptssr-cache" / "*.digest.json")):
            os.remove(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(data)], stdout=subprocess.PIPE, env=env,
                            cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise RuntimeError(f"child failed ({status})")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result.update(mode=mode, peak_rss_mib=round(usage.ru_maxrss / 1024))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/check-bench"))
    ap.add_argument("--users", type=int, default=200_000, help="TTL users to generate (release: 1470149)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, "ttl")))
        return 0
    data = prepare(args.workdir, args.users, args.seed, TASKS)
    results = [run_child(data, mode) for mode in ("first", "again")]
    sizes = {p.name: p.stat().st_size for p in sorted((data / "ttl").iterdir())}
    summary = {"users": args.users, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} "
                                               "CPUs", "file_bytes": sizes, "runs": results}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Benchmark the TTL conversion: generate (or reuse) TTL-format data, convert it, report time and memory.

  python scripts/bench_convert_ttl.py --workdir /tmp/ttl-bench            # full release size (1.47M users)
  python scripts/bench_convert_ttl.py --workdir /tmp/ttl-bench --users 100000 --cleanup

The conversion runs as a child process (``python -m dataset_converters ttl``); its wall time and peak resident
memory (``ru_maxrss`` of that child, from ``os.wait4``) are reported with the throughput in behaviours/s.
Generated data is kept in WORKDIR/data and reused when its recorded parameters match (``--regenerate`` forces
a fresh one); ``--cleanup`` deletes the data and the converted output afterwards.
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


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ttl-bench"), help="scratch folder (default %(default)s)")
    ap.add_argument("--users", type=int, default=1_470_149, help="sequences to generate (default: release size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--regenerate", action="store_true", help="generate even if matching data exists")
    ap.add_argument("--cleanup", action="store_true", help="delete generated data and output at the end")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    a = ap.parse_args(argv)

    data, out = a.workdir / "data", a.workdir / "out"
    marker = data / "generated.json"
    params = {"users": a.users, "seed": a.seed}
    gen_s = None
    if a.regenerate or not marker.exists() or json.loads(marker.read_text()).get("params") != params:
        shutil.rmtree(data, ignore_errors=True)
        print(f"generating {a.users:,} users into {data} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_ttl.py"), "--output", str(data),
                        "--users", str(a.users), "--seed", str(a.seed), "--quiet"], check=True)
        gen_s = time.perf_counter() - t
        marker.write_text(json.dumps({"params": params, "seconds": round(gen_s, 1)}))
    input_bytes = _size(data) - marker.stat().st_size

    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "dataset_converters", "ttl", "--input", str(data), "--output", str(out),
           "--no-progress"]
    print("converting: " + " ".join(cmd), file=sys.stderr, flush=True)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc
    if rc != 0:
        print(f"conversion failed with exit code {rc}", file=sys.stderr)
        return 1
    stats = json.loads((out / "ttl" / "ttl.stats.json").read_text())
    seq = stats["sequences"]
    res = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "users": a.users,
        "num_sequences": seq["num_sequences"],
        "num_behaviours": seq["num_behaviours"],
        "num_distinct_behaviours": seq["num_distinct_behaviours"],
        "task_samples": {k: v["num_samples"] for k, v in stats["tasks"].items()},
        "input_bytes": input_bytes,
        "output_bytes": _size(out),
        "generate_s": round(gen_s, 1) if gen_s is not None else None,
        "wall_s": round(wall, 1),
        "user_cpu_s": round(usage.ru_utime, 1),
        "sys_cpu_s": round(usage.ru_stime, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "behaviours_per_s": round(seq["num_behaviours"] / wall),
        "input_mib_per_s": round(input_bytes / 2**20 / wall, 1),
    }
    print(json.dumps(res, indent=2))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    if a.cleanup:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

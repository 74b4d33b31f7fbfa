"""Wall time of one comparison run with ``executor: serial`` and with ``executor: processes`` on this machine, and
whether both give the same Table 2 (docs/execution.md, "Measured").

    python scripts/bench_executor.py --workers=2 --methods="[none,mlm,adaptssr,cl4srec]" --repeat=2 \\
        --mlm_epochs=3 --ssr_epochs=2 --cl4srec_epochs=2 --finetune_epochs=3

Each run is a fresh ``run_recbole_adaptssr.py`` process (the command a user types), timed from start to exit, in a
folder of its own under ``--out`` (also the working folder: the embedded data set is converted there); a warm-up
run first (no pre-training, one fine-tune epoch, on the data the other settings name) converts the data set and
builds its caches, so neither timed run pays for them. Every other ``--key=value`` is a setting of both runs.
``torch_threads`` and ``cpus_per_unit`` are 1 unless given: a unit then computes the same in this process and in a worker (torch's
float results depend on its thread count). Prints one line per run and whether the tables agree; exits 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command(out: Path, name: str, settings: list, extra: list) -> list:
    return [sys.executable, str(REPO / "run_recbole_adaptssr.py"), f"--checkpoint_dir={out / name}",
            "--show_progress=False", "--state=WARNING", *settings, *extra]


def timed(cmd: list, cwd: Path) -> float:
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def table2(folder: Path) -> dict:
    (run,) = folder.iterdir()
    saved = json.loads((run / "comparison.json").read_text())
    return {"table2": saved["table2"], "runs": sorted((r["start_point"], r["task"], r["seed"], r["best_epoch"],
                                                       r["valid"], r["test"]) for r in saved["runs"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of executor: processes")
    parser.add_argument("--methods", default="[none,mlm,adaptssr,cl4srec]", help="pretrain_methods of both runs")
    parser.add_argument("--out", default="saved/bench_executor", help="where the runs write")
    parser.add_argument("--gpus_per_unit", type=float, default=None,
                        help="GPU share of a unit in the processes run (with --device=cuda; the serial run has the "
                             "whole GPU)")
    args, extra = parser.parse_known_args(argv)
    given = {arg.split("=")[0] for arg in extra}
    settings = [f"--pretrain_methods={args.methods}", "--similarity_users=0"]
    settings += [f"--{key}=1" for key in ("torch_threads",) if f"--{key}" not in given]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # the warm-up reads the data the timed runs read (their settings but the ones it sets: a key given twice with
    # two values is an error of RecBole's command line)
    warm_up = {"--pretrain_methods": "[none]", "--similarity_users": "0", "--finetune_epochs": "1", "--repeat": "1"}
    timed(command(out, "warm-up", [f"{key}={value}" for key, value in warm_up.items()],
                  [arg for arg in extra if arg.split("=")[0] not in warm_up]), out)
    shares = [] if "--cpus_per_unit" in given else ["--cpus_per_unit=1"]  # a worker's resources
    if args.gpus_per_unit is not None:
        shares.append(f"--gpus_per_unit={args.gpus_per_unit}")
    runs = {"serial": command(out, "serial", settings, extra),
            "processes": command(out, "processes", settings, [*extra, "--executor=processes",
                                                             f"--executor_workers={args.workers}", *shares])}
    seconds = {name: timed(cmd, out) for name, cmd in runs.items()}
    same = table2(out / "serial") == table2(out / "processes")
    for name, value in seconds.items():
        print(f"executor {name}: {value:.1f} s")
    print(f"speed-up {seconds['serial'] / seconds['processes']:.2f}x with {args.workers} workers on "
          f"{os.cpu_count()} CPUs (load average now: {os.getloadavg()[0]:.2f}); the same Table 2: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Pre-training speed on the users' own path: ``run_recbole_adaptssr.py`` itself, on a TTL-format data set.

    python scripts/bench_entrypoint.py --workdir /tmp/ep --users 200000 --device cuda --variants default,bf16

Data: ``--users`` TTL users from scripts/generate_ttl.py (645,972 behaviours, lengths as TTL's), converted by
``python -m dataset_converters ttl`` (kept in WORKDIR and reused; scripts/bench_load.py's ``prepare``). Each
``--variants`` entry (settings from scripts/bench_pretrain.py's ``VARIANTS``) runs in a fresh process that executes
``run_recbole_adaptssr.py --model=AdaptSSR --dataset=ttl --data_path=... --mlm_epochs=1 --ssr_epochs=1
--downstream_tasks=[]`` (pre-training only: MLM, then ranking, validation after each epoch, checkpoints) with
scripts/stage_timing.py's hooks on the trainer, and reports per stage:

* ``steady ms/step`` and ``sequences/s``: the first epoch after its first 20 steps (median interval between
  consecutive step ends, timed by CUDA events; sequences over the time of those steps);
* ``first step``: its duration (Triton compilation, CUDA graph capture): the warm-up, reported apart;
* ``epoch``: the whole first epoch's wall time and sequences/s (warm-up included);
* ``to first step``: from the process's start (imports, data set, model) to the end of the stage's first step;
* peak GPU memory of the stage, allocated and reserved, validation included.

``--extra "key=value ..."`` adds settings to every variant. The process's total wall time and whether ``ray`` was
imported (the pre-training path must not need it) are recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def child(args) -> dict:
    """One variant in this process: the entry point under the stage hooks."""
    import psutil

    started = time.perf_counter() - (time.time() - psutil.Process().create_time())  # the process's start
    import torch

    from bench_pretrain import VARIANTS
    from stage_timing import StageTimer

    overrides = {**VARIANTS[args.child], **dict(kv.split("=", 1) for kv in args.extra.split())}
    argv = ["run_recbole_adaptssr.py", "--model=AdaptSSR", "--dataset=ttl", f"--data_path={args.data}",
            f"--device={args.device}", "--show_progress=False", f"--mlm_epochs={args.mlm_epochs}",
            f"--ssr_epochs={args.ssr_epochs}", "--downstream_tasks=[]",
            f"--checkpoint_dir={Path(args.workdir) / 'saved'}", f"--seed={args.seed}"]
    argv += [f"--{key}={value}" for key, value in overrides.items()]
    sys.argv = argv
    cuda = args.device.startswith("cuda")
    with StageTimer(cuda, start=started) as timer:
        try:  # the entry point ends as a script does, with sys.exit(status)
            runpy.run_path(str(ROOT / "run_recbole_adaptssr.py"), run_name="__main__")
        except SystemExit as end:
            if end.code not in (None, 0):
                raise
    return {"variant": args.child, "overrides": overrides, "argv": argv, "stages": timer.records,
            "process_s": time.perf_counter() - started, "ray_imported": "ray" in sys.modules,
            "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__}


def summary(run: dict) -> list:
    lines = []
    for stage, rec in run["stages"].items():
        epoch = rec["epochs"][0]
        lines.append(
            f"{run['variant']:>12} {stage:>4}: steady {epoch.get('steady_ms_per_step', float('nan')):.2f} ms/step "
            f"(mean {epoch.get('steady_mean_ms_per_step', float('nan')):.2f}), "
            f"{epoch.get('steady_sequences_per_s', float('nan')):,.0f} seq/s; epoch {epoch['seconds']:.1f} s = "
            f"{epoch['sequences_per_s']:,.0f} seq/s over {epoch['steps']} steps; first step {rec['first_step_s']:.2f} s "
            f"(graphed {rec.get('graphed')}, {rec.get('precision')}); to first step {rec['time_to_first_step_s']:.1f} s; "
            f"peak {rec.get('peak_allocated_mib', 0):,.0f} / {rec.get('peak_reserved_mib', 0):,.0f} MiB; "
            f"{rec['optimizer']}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-entrypoint"))
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--variants", default="default,bf16")
    parser.add_argument("--mlm-epochs", type=int, default=1)
    parser.add_argument("--ssr-epochs", type=int, default=1)
    parser.add_argument("--extra", default="", help='settings for every variant: "key=value key=value"')
    parser.add_argument("--data", type=Path, help="a converted data set folder holding ttl/ (else generated)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(args)
        args.result.write_text(json.dumps(result, indent=1, default=str))
        return result

    from bench_load import prepare

    args.workdir.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    data = args.data or prepare(args.workdir, args.users, args.data_seed)
    report = {"users": args.users, "data_s": time.perf_counter() - begin, "runs": []}
    print(f"data ready in {report['data_s']:.1f} s: {data}", flush=True)
    for variant in args.variants.split(","):
        result_file = args.workdir / f"result-{variant}.json"
        result_file.unlink(missing_ok=True)
        cmd = [sys.executable, __file__, "--child", variant, "--data", str(data), "--workdir", str(args.workdir),
               "--device", args.device, "--mlm-epochs", str(args.mlm_epochs), "--ssr-epochs", str(args.ssr_epochs),
               "--seed", str(args.seed), "--extra", args.extra, "--result", str(result_file)]
        status = subprocess.run(cmd, cwd=args.workdir, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
        if status != 0 or not result_file.exists():
            print(f"variant {variant} failed (exit status {status})", flush=True)
            continue
        run = json.loads(result_file.read_text())
        report["runs"].append(run)
        print("\n".join(summary(run)), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()

"""Run a command and sample the resident memory of its whole process tree: the peak of every interval and overall.

    python scripts/rss_timeline.py --interval 1 --window 20 -- python run_recbole_adaptssr.py ...

A benchmark helper (issue 16: does the MLM stage's memory grow epoch after epoch?), not a test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import psutil


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--window", type=float, default=20.0, help="seconds per reported interval")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.time()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process = psutil.Process(child.pid)
    peaks = {}
    while child.poll() is None:
        window = int((time.time() - start) // args.window)
        peaks[window] = max(peaks.get(window, 0), tree_rss(process))
        time.sleep(args.interval)
    print(f"exit {child.returncode} after {time.time() - start:.0f} s; peak RSS per {args.window:.0f} s window (MiB):")
    print(" ".join(f"{peaks[w] / 2**20:.0f}" for w in sorted(peaks)))
    print(f"overall peak {max(peaks.values(), default=0) / 2**20:.0f} MiB")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())

"""Results of repeated downstream runs: mean +- std per (start point, task, metric), written as a markdown table
(the paper's Table 2 layout: one row per start point, one column per task metric), JSON and CSV."""

from __future__ import annotations

import csv
import json
import os
import statistics
import time


def summarize(records: list) -> list:
    """Group per-seed records ``{variant, task, metric, value, seed}`` into mean/std rows (sample std, n-1)."""
    groups = {}
    for r in records:
        groups.setdefault((r["variant"], r["task"], r["metric"]), []).append(r)
    rows = []
    for (variant, task, metric), runs in groups.items():
        values = [float(r["value"]) for r in runs]
        rows.append({
            "variant": variant, "task": task, "metric": metric, "n": len(values),
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "seeds": [r["seed"] for r in runs], "values": values,
        })
    return rows


def markdown_table(rows: list, decimals: int = 4) -> str:
    """One row per start point, one column per ``task (metric)``, cells ``mean ± std``."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    columns = list(dict.fromkeys((r["task"], r["metric"]) for r in rows))
    cell = {(r["variant"], r["task"], r["metric"]): r for r in rows}
    n = max((r["n"] for r in rows), default=0)
    lines = ["| start point | " + " | ".join(f"{t} ({m})" for t, m in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for v in variants:
        cells = []
        for t, m in columns:
            r = cell.get((v, t, m))
            cells.append("-" if r is None else f"{r['mean']:.{decimals}f} ± {r['std']:.{decimals}f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines.append(f"\nmean ± std over {n} seed(s) (sample std); test metrics at the best validation epoch.")
    return "\n".join(lines)


def write_results(rows: list, records: list, folder: str, stem: str) -> dict:
    """Write ``stem.md``, ``stem.json`` (summary and per-seed records) and ``stem.csv``; return the paths."""
    os.makedirs(folder, exist_ok=True)
    stem = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.time_ns() % 10**6:06d}"
    paths = {ext: os.path.join(folder, f"{stem}.{ext}") for ext in ("md", "json", "csv")}
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown_table(rows) + "\n")
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump({"summary": rows, "runs": records}, f, indent=2)
    with open(paths["csv"], "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "task", "metric", "n", "mean", "std", "values"])
        for r in rows:
            writer.writerow([r["variant"], r["task"], r["metric"], r["n"], f"{r['mean']:.6f}", f"{r['std']:.6f}",
                             " ".join(f"{v:.6f}" for v in r["values"])])
    return paths

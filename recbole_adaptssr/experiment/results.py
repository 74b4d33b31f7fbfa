"""Results of an experiment: one :class:`RunResult` per fine-tune run, aggregated as mean +- std per (start point,
task, metric) on the validation or the test split, and written as a markdown table (the paper's Table 2 layout:
one row per start point, one column per task metric), JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
from dataclasses import asdict, dataclass, field

from recbole_adaptssr.files import atomic_write

SPLITS = ("valid", "test")


@dataclass
class RunResult:
    """One fine-tune run: the best validation metrics, the test metrics at that epoch, and where it wrote."""

    model: str
    dataset: str
    task: str
    kind: str
    start_point: str
    seed: int
    valid: dict
    test: dict
    best_epoch: int
    valid_metric: str
    run_dir: str = ""
    checkpoint: str = ""
    settings: dict = field(default_factory=dict)

    def metrics(self, split: str) -> dict:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.valid if split == "valid" else self.test

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(results: list, split: str = "test") -> list:
    """Mean and sample std (n-1) per (start point, task, metric) of ``split``'s metrics over the runs' seeds."""
    groups = {}
    for r in results:
        for metric, value in r.metrics(split).items():
            groups.setdefault((r.start_point, r.task, metric), []).append((r.seed, float(value)))
    rows = []
    for (start_point, task, metric), runs in groups.items():
        values = [v for _, v in runs]
        rows.append({
            "start_point": start_point, "task": task, "metric": metric, "split": split, "n": len(values),
            "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "seeds": [s for s, _ in runs], "values": values,
        })
    return rows


def markdown_table(rows: list, decimals: int = 4) -> str:
    """One row per start point, one column per ``task (metric)``, cells ``mean ± std``."""
    starts = list(dict.fromkeys(r["start_point"] for r in rows))
    columns = list(dict.fromkeys((r["task"], r["metric"]) for r in rows))
    cell = {(r["start_point"], r["task"], r["metric"]): r for r in rows}
    n = max((r["n"] for r in rows), default=0)
    split = rows[0]["split"] if rows else "test"
    lines = ["| start point | " + " | ".join(f"{t} ({m})" for t, m in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for s in starts:
        cells = []
        for t, m in columns:
            r = cell.get((s, t, m))
            cells.append("-" if r is None else f"{r['mean']:.{decimals}f} ± {r['std']:.{decimals}f}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    what = "test metrics at the best validation epoch" if split == "test" else "best validation metrics"
    lines.append(f"\nmean ± std over {n} seed(s) (sample std); {what}.")
    return "\n".join(lines)


def write_results(rows: list, results: list, folder: str, stem: str = "results", notes: str = "") -> dict:
    """Write ``stem.md`` (the table, then ``notes``), ``stem.json`` (summaries of both splits and every run) and
    ``stem.csv`` into ``folder``, each atomically (a temporary file renamed into place); return the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = {ext: os.path.join(folder, f"{stem}.{ext}") for ext in ("md", "json", "csv")}
    summaries = {split: summarize(results, split) for split in SPLITS}
    payload = {"summary": rows, "summaries": summaries, "runs": [r.as_dict() for r in results]}
    csv_text = io.StringIO()
    writer = csv.writer(csv_text)
    writer.writerow(["start_point", "task", "metric", "split", "n", "mean", "std", "values"])
    for split in SPLITS:
        for r in summaries[split]:
            writer.writerow([r["start_point"], r["task"], r["metric"], split, r["n"], f"{r['mean']:.6f}",
                             f"{r['std']:.6f}", " ".join(f"{v:.6f}" for v in r["values"])])
    atomic_write_text(paths["md"], markdown_table(rows) + "\n" + (notes + "\n" if notes else ""))
    atomic_write_text(paths["json"], json.dumps(payload, indent=2, default=str))
    atomic_write_text(paths["csv"], csv_text.getvalue())
    return paths


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` (``.<name>.tmp-<pid>-<random>``), flush it to disk and
    rename it into place (then fsync the folder); on failure the temporary file is removed, the previous file (if
    any) is intact and the error (``OSError``) names ``path``."""
    try:
        atomic_write(path, lambda f: f.write(text), binary=False)
    except Exception as error:
        raise OSError(f"could not write {path}: {type(error).__name__}: {error}") from error


def atomic_write_json(path: str, value) -> None:
    """:func:`atomic_write_text` of ``value`` as indented JSON (non-JSON values written as their ``str``)."""
    atomic_write_text(path, json.dumps(value, indent=2, default=str) + "\n")


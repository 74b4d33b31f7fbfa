"""Results of an experiment: one :class:`RunResult` per fine-tune run, aggregated as mean +- std per (start point,
task, metric) on the validation or the test split, and written as a markdown table (the paper's Table 2 layout:
one row per start point, one column per task metric), JSON and CSV. A cell holding a run that stopped on a cap
while still improving (:mod:`recbole_adaptssr.stopping`) is marked with a dagger and a footnote."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
from dataclasses import asdict, dataclass, field

from recbole_adaptssr.files import atomic_write
from recbole_adaptssr.stopping import DAGGER, StopRecord

SPLITS = ("valid", "test")
#: the stopping columns of every CSV row: per seed, in the row's seed order
STOPPING_COLUMNS = ("still_improving_runs", "stopped_by", "epochs_run", "steps_run", "best_epochs")


@dataclass
class RunResult:
    """One fine-tune run: the best validation metrics, the test metrics at that epoch, where it wrote, and how it
    stopped (:class:`~recbole_adaptssr.stopping.StopRecord`'s fields; their defaults read a run recorded
    without them: ``stopped_by`` empty)."""

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
    stopped_by: str = ""
    epochs_run: int = -1
    steps_run: int = -1
    still_improving: bool = False

    def stop_record(self) -> StopRecord:
        return StopRecord(stopped_by=self.stopped_by, epochs_run=self.epochs_run, steps_run=self.steps_run,
                          best_epoch=self.best_epoch, still_improving=self.still_improving)

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
            groups.setdefault((r.start_point, r.task, metric), []).append((r, float(value)))
    rows = []
    for (start_point, task, metric), runs in groups.items():
        values = [v for _, v in runs]
        rows.append({
            "start_point": start_point, "task": task, "metric": metric, "split": split, "n": len(values),
            "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "seeds": [r.seed for r, _ in runs], "values": values, **stopping_summary([r for r, _ in runs]),
        })
    return rows


def stopping_summary(runs: list) -> dict:
    """How the runs of one cell stopped, per run in order: ``stopped_by``, ``epochs_run``, ``steps_run``,
    ``best_epochs``; ``still_improving_runs``: how many stopped on a cap while still improving."""
    return {"still_improving_runs": sum(1 for r in runs if r.stop_record().capped_while_improving()),
            "stopped_by": [r.stopped_by for r in runs], "epochs_run": [r.epochs_run for r in runs],
            "steps_run": [r.steps_run for r in runs], "best_epochs": [r.best_epoch for r in runs]}


def stopping_cells(row: dict) -> list:
    """A summary row's :data:`STOPPING_COLUMNS` as CSV cells (lists space-separated)."""
    return [row.get("still_improving_runs", 0),
            *(" ".join(str(v) for v in row.get(key, [])) for key in STOPPING_COLUMNS[1:])]


def dagger(row: dict) -> str:
    """The cell's mark: a dagger when one of its runs stopped on a cap while still improving."""
    return DAGGER if row.get("still_improving_runs") else ""


def cap_footnote(rows: list, what: str = "fine-tune") -> str:
    """The footnote of the dagger, or "" when no cell has one."""
    marked = sum(1 for r in rows if r.get("still_improving_runs"))
    if not marked:
        return ""
    return (f"{DAGGER} {marked} cell(s) hold a {what} run that stopped on a cap (epochs, steps or time) while still "
            "improving: its best epoch was among its last stopping_step epochs, so the number is not converged; "
            "raise the cap (finetune_epochs or baseline_epochs, or their _max_steps / _max_seconds).")


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
            cells.append("-" if r is None else f"{r['mean']:.{decimals}f} ± {r['std']:.{decimals}f}{dagger(r)}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    what = "test metrics at the best validation epoch" if split == "test" else "best validation metrics"
    lines.append(f"\nmean ± std over {n} seed(s) (sample std); {what}.")
    footnote = cap_footnote(rows)
    if footnote:
        lines.append(footnote)
    return "\n".join(lines)


def pretrain_notes(stages: dict) -> str:
    """How each pre-training stage stopped (``{stage: StageResult}``), a dagger on those that stopped on a cap
    while still improving."""
    if not stages:
        return ""
    lines = ["", "Pre-training stages (stopped by, epochs, steps, best epoch):", ""]
    for name, stage in stages.items():
        mark = DAGGER if stage.stop_record().capped_while_improving() else ""
        lines.append(f"* {name}{mark}: {stage.stopped_by or '?'}, {stage.epochs_run} epochs, {stage.steps_run} "
                     f"steps, best epoch {stage.best_epoch} (valid {stage.valid_metric}; {stage.stopping_rule})")
    if any(s.stop_record().capped_while_improving() for s in stages.values()):
        lines.append(f"\n{DAGGER} stopped on a cap while still improving: raise <stage>_epochs (or its step/time cap).")
    return "\n".join(lines)


def write_results(rows: list, results: list, folder: str, stem: str = "results", notes: str = "",
                  pretrain: dict | None = None) -> dict:
    """Write ``stem.md`` (the table, then ``notes`` and how the pre-training stages stopped), ``stem.json``
    (summaries of both splits, every run, and the ``pretrain`` stages ``{stage: StageResult}``) and ``stem.csv``
    into ``folder``, each atomically (a temporary file renamed into place); return the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = {ext: os.path.join(folder, f"{stem}.{ext}") for ext in ("md", "json", "csv")}
    summaries = {split: summarize(results, split) for split in SPLITS}
    payload = {"summary": rows, "summaries": summaries, "runs": [r.as_dict() for r in results]}
    if pretrain:
        payload["pretrain"] = {name: asdict(stage) for name, stage in pretrain.items()}
        notes = "\n".join(part for part in (notes, pretrain_notes(pretrain)) if part)
    csv_text = io.StringIO()
    writer = csv.writer(csv_text)
    writer.writerow(["start_point", "task", "metric", "split", "n", "mean", "std", "values", *STOPPING_COLUMNS])
    for split in SPLITS:
        for r in summaries[split]:
            writer.writerow([r["start_point"], r["task"], r["metric"], split, r["n"], f"{r['mean']:.6f}",
                             f"{r['std']:.6f}", " ".join(f"{v:.6f}" for v in r["values"]), *stopping_cells(r)])
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


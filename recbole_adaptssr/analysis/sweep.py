"""Fig. 3 from a study's trials table: the metric against a swept setting, one line per group (the pre-training
method, and every other searched grid setting except the seed), the mean over the trials of a point (seeds) with
their sample std, and a markdown table of the same numbers.

A study is a sweep when its space has a ``grid`` line of numbers other than ``seed`` (:func:`swept_setting`;
``augmentation_proportion`` first, as the paper's Fig. 3): it then writes ``fig3_sweep.png`` / ``.svg`` /
``.md`` beside ``trials.csv`` (``plots: False`` skips them). ``scripts/plot_sweep.py`` draws the same from any
``trials.csv``. Only completed trials are drawn by default: a trial a scheduler stopped early trained less.
"""

from __future__ import annotations

import csv
import math
import os
import statistics

from recbole_adaptssr.analysis import figures
from recbole_adaptssr.files import atomic_write

#: columns of a trials table that are not searched settings
NOT_SEARCHED = ("trial", "status", "method", "best_epoch", "epochs", "seconds", "error")
#: the setting a sweep is drawn against when the space has it (the paper's Fig. 3)
FIG3_SETTING = "augmentation_proportion"
#: searched settings averaged over rather than drawn as lines
REPEATS = ("seed",)
STEM = "fig3_sweep"


def number_or_none(text):
    """``text`` (a CSV cell, a metric) as a float, or None when it is none, not a number or NaN."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def read_trials(path: str) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def swept_setting(dims) -> str | None:
    """The x axis of a study's sweep: ``augmentation_proportion`` when searched, else the first ``grid`` dimension
    whose values are all numbers (not ``seed``); ``None``: the study is no sweep."""
    names = [d.name for d in dims]
    if FIG3_SETTING in names:
        return FIG3_SETTING
    for d in dims:
        values = d.values() if d.kind == "grid" else None
        if d.name not in REPEATS and values and all(number_or_none(v) is not None and not isinstance(v, bool)
                                                    for v in values):
            return d.name
    return None


def pick_columns(rows: list, x=None, y=None, group=None) -> tuple:
    """``(x, y, groups)``: the swept column (default :data:`FIG3_SETTING`, else the first numeric searched
    column), the metric (the ``valid <metric>`` column) and the columns whose values make a line: ``group`` when
    given, else ``method`` (pre-training searches) and every other searched column with more than one value
    except :data:`REPEATS`. Raises ``ValueError`` naming the option (``--x``, ``--y``, ``--group`` of
    ``scripts/plot_sweep.py``) and the table's columns when x, y or group is not a column or cannot be told."""
    columns = list(rows[0]) if rows else []
    searched = [c for c in columns if c not in NOT_SEARCHED and not c.startswith(("valid ", "pretrain epochs "))]
    problems = [f"--{name} {given!r} is not a column" for name, given in (("x", x), ("y", y), ("group", group))
                if given is not None and given not in columns]
    if y is None:
        y = next((c for c in columns if c.startswith("valid ")), None)
        problems += [] if y else ["no 'valid <metric>' column to draw: give --y"]
    if x is None:
        x = FIG3_SETTING if FIG3_SETTING in columns else next(
            (c for c in searched if all(number_or_none(r[c]) is not None for r in rows if r[c] != "")), None)
        problems += [] if x else ["no numeric searched column to draw against: give --x"]
    if problems:
        raise ValueError("; ".join(problems) + f"; the columns of the trials table: {', '.join(columns)}")
    if group is not None:
        return x, y, [group]
    varying = [c for c in searched if c not in (x, *REPEATS) and len({r[c] for r in rows}) > 1]
    return x, y, (["method"] if "method" in columns else []) + varying


def series(rows: list, x: str, y: str, groups=(), include_stopped: bool = False) -> tuple:
    """``({group label: [(x, mean, std, n)]}, skipped)``: the points of each line sorted by x, and the rows left
    out (trial, status, error): not completed (or stopped early, unless ``include_stopped``), or without x or y."""
    drawn = ("completed", "stopped_early") if include_stopped else ("completed",)
    points, skipped = {}, []
    for r in rows:
        xv, yv = number_or_none(r.get(x)), number_or_none(r.get(y))
        if r.get("status") not in drawn or xv is None or yv is None:
            skipped.append((r.get("trial"), r.get("status"), r.get("error", "")))
            continue
        label = ", ".join(str(r.get(g)) if g == "method" else f"{g}={r.get(g)}" for g in groups) or y
        points.setdefault(label, {}).setdefault(xv, []).append(yv)
    out = {name: [(xv, statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
                  for xv, v in sorted(by_x.items())] for name, by_x in points.items()}
    return out, skipped


def markdown(lines: dict, x: str, y: str, skipped: list) -> str:
    xs = sorted({p[0] for pts in lines.values() for p in pts})
    names = list(lines)
    text = [f"| {x} | " + " | ".join(str(n) for n in names) + " |", "|---|" + "---|" * len(names)]
    for xv in xs:
        cells = []
        for n in names:
            p = next((p for p in lines[n] if p[0] == xv), None)
            cells.append("-" if p is None else (f"{p[1]:.4f}" + (f" ± {p[2]:.4f} (n={p[3]})" if p[3] > 1 else "")))
        text.append(f"| {xv:g} | " + " | ".join(cells) + " |")
    text.append(f"\n{y}: mean over the trials of each point (± sample std when there are several, e.g. seeds); "
                "selection-free sweep on the validation split.")
    if skipped:
        text.append("Not drawn: " + "; ".join(f"{t} ({s}{': ' + e if e else ''})" for t, s, e in skipped))
    return "\n".join(text) + "\n"


def write_sweep(trials_csv: str, stem: str | None = None, x=None, y=None, group=None, title=None,
                include_stopped: bool = False) -> dict:
    """Fig. 3 of ``trials_csv`` as ``<stem>.png``, ``<stem>.svg`` and ``<stem>.md`` (default stem:
    ``fig3_sweep`` beside the table); ``{"png", "svg", "md", "table"}``. Raises ``ValueError`` when there is
    nothing to draw."""
    rows = read_trials(trials_csv)
    if not rows:
        raise ValueError(f"{trials_csv} has no trials")
    x, y, groups = pick_columns(rows, x, y, group)
    lines, skipped = series(rows, x, y, groups, include_stopped)
    if not lines:
        raise ValueError(f"no completed trial with {x} and {y} in {trials_csv}")
    stem = stem or os.path.join(os.path.dirname(os.path.abspath(trials_csv)), STEM)
    title = title or f"{y} vs {x.replace('_', ' ')}"
    files = figures.save(figures.sweep_figure(lines, x, y, title), stem)
    table = markdown(lines, x, y, skipped)
    files["md"] = atomic_write(f"{stem}.md", lambda f: f.write(f"# {title}\n\n{table}"), binary=False)
    return {**files, "table": table}


def study_sweep(trials_csv: str, dims, settings: dict) -> dict:
    """A study's Fig. 3 beside its trials table when its space sweeps a number (:func:`swept_setting`) and the
    ``plots`` setting (of ``settings``, the study's, else its default) is on; ``{"sweep_png": ..., "sweep_svg":
    ..., "sweep_md": ...}``, or {} (also when no trial completed)."""
    from recbole_adaptssr.setting_keys import default_value

    x = swept_setting(dims) if settings.get("plots", default_value("plots")) else None
    if x is None:
        return {}
    try:
        files = write_sweep(trials_csv, x=x)
    except ValueError:
        return {}
    return {f"sweep_{k}": v for k, v in files.items() if k != "table"}

"""Turn a finished study's trials table into the paper's Fig. 3 layout: the metric against a swept setting, one
line per method (mean over seeds, with the std as a band/error bar when a point has several), plus a markdown
table of the same numbers.

    python scripts/plot_sweep.py saved/hyper/<study>/trials.csv --out fig3.png [--md fig3.md]
        [--x augmentation_proportion] [--y "valid ndcg@10"] [--group method] [--title TITLE] [--include_stopped]

Defaults: x is ``augmentation_proportion`` when the table has it (else the first numeric searched column), y is
the table's ``valid <metric>`` column (a study records validation only), group is ``method`` (pre-training
searches) when present. Only completed trials are drawn: a trial a scheduler stopped early trained less
(``--include_stopped`` draws them too); failed and unfinished trials are listed, not drawn. matplotlib draws.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys

NOT_SEARCHED = ("trial", "status", "method", "best_epoch", "epochs", "seconds", "error")
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]


def _float(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def read_trials(path: str) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pick_columns(rows: list, x=None, y=None, group=None) -> tuple:
    columns = list(rows[0]) if rows else []
    if y is None:
        y = next((c for c in columns if c.startswith("valid ")), None)
    if x is None:
        if "augmentation_proportion" in columns:
            x = "augmentation_proportion"
        else:
            searched = [c for c in columns
                        if c not in NOT_SEARCHED and not c.startswith(("valid ", "pretrain epochs "))]
            x = next((c for c in searched if all(_float(r[c]) is not None for r in rows if r[c] != "")), None)
    if group is None and "method" in columns:
        group = "method"
    missing = [name for name, c in (("--x", x), ("--y", y)) if c is None or c not in columns]
    if missing:
        raise SystemExit(f"plot_sweep: cannot tell {' and '.join(missing)} from the columns {columns}")
    if group is not None and group not in columns:
        raise SystemExit(f"plot_sweep: --group {group!r} is not a column of the table: {columns}")
    return x, y, group


def aggregate(rows: list, x: str, y: str, group, include_stopped=False) -> tuple:
    """``{group: [(x, mean, std, n)]}`` sorted by x, and the rows left out (with why)."""
    drawn = ("completed", "stopped_early") if include_stopped else ("completed",)
    points, skipped = {}, []
    for r in rows:
        xv, yv = _float(r.get(x)), _float(r.get(y))
        if r.get("status") not in drawn or xv is None or yv is None:
            skipped.append((r.get("trial"), r.get("status"), r.get("error", "")))
            continue
        points.setdefault(r.get(group) if group else y, {}).setdefault(xv, []).append(yv)
    series = {}
    for name, by_x in points.items():
        series[name] = [(xv, statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
                        for xv, v in sorted(by_x.items())]
    return series, skipped


def markdown(series: dict, x: str, y: str, skipped: list) -> str:
    xs = sorted({p[0] for pts in series.values() for p in pts})
    names = list(series)
    lines = [f"| {x} | " + " | ".join(str(n) for n in names) + " |", "|---|" + "---|" * len(names)]
    for xv in xs:
        cells = []
        for n in names:
            p = next((p for p in series[n] if p[0] == xv), None)
            cells.append("-" if p is None else (f"{p[1]:.4f}" + (f" ± {p[2]:.4f} (n={p[3]})" if p[3] > 1 else "")))
        lines.append(f"| {xv:g} | " + " | ".join(cells) + " |")
    lines.append(f"\n{y}: mean over the trials of each point (± sample std when there are several, e.g. seeds); "
                 "selection-free sweep on the validation split.")
    if skipped:
        lines.append("Not drawn: " + "; ".join(f"{t} ({s}{': ' + e if e else ''})" for t, s, e in skipped))
    return "\n".join(lines) + "\n"


def plot(series, x, y, title, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    for i, (name, pts) in enumerate(series.items()):
        xs, means, stds = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
        color = PALETTE[i % len(PALETTE)]
        ax.plot(xs, means, marker=MARKERS[i % len(MARKERS)], color=color, label=str(name))
        if any(stds):
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=color, alpha=0.15)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trials", help="trials.csv of a study (its output folder)")
    parser.add_argument("--x", default=None, help="the swept column (default: augmentation_proportion)")
    parser.add_argument("--y", default=None, help="the metric column (default: the 'valid <metric>' column)")
    parser.add_argument("--group", default=None, help="one line per value of this column (default: method)")
    parser.add_argument("--title", default=None, help="the figure's title")
    parser.add_argument("--out", default=None, help="PNG to write (default: <trials folder>/sweep.png)")
    parser.add_argument("--md", default=None, help="markdown table to write (default: <trials folder>/sweep.md)")
    parser.add_argument("--include_stopped", action="store_true", help="draw trials a scheduler stopped early too")
    args = parser.parse_args(argv)

    rows = read_trials(args.trials)
    if not rows:
        raise SystemExit(f"plot_sweep: {args.trials} has no trials")
    x, y, group = pick_columns(rows, args.x, args.y, args.group)
    series, skipped = aggregate(rows, x, y, group, args.include_stopped)
    if not series:
        raise SystemExit(f"plot_sweep: no completed trial with {x} and {y} in {args.trials}")
    folder = os.path.dirname(os.path.abspath(args.trials))
    out = args.out or os.path.join(folder, "sweep.png")
    md = args.md or os.path.splitext(out)[0] + ".md"
    title = args.title or f"{y} vs {x.replace('_', ' ')}"
    plot(series, x, y, title, out)
    table = markdown(series, x, y, skipped)
    with open(md, "w", encoding="utf-8") as f:
        f.write(f"# {title}\n\n{table}")
    print(table)
    print(f"plot: {out}\ntable: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The paper's figures from numbers a run has already computed: rows in, PNG and SVG files out.

* Table 2 as grouped bars (:func:`table2_figure`): one panel per metric, a group of bars per task measured with
  it, one bar per method, the height the mean over the seeds and the error bar one (sample) std;
* Fig. 4, AdaptSSR's ablations (:func:`ablation_figure`): one panel per task, one bar per method among
  ``adaptssr`` and its ablations (the methods named ``adaptssr_*``, e.g. those of ``properties/methods.yaml``);
* Fig. 5, similarity distributions (:func:`similarity_figure`): one panel per checkpoint, the Gaussian KDE of the
  original-vs-augmented and of the different-users cosine similarities;
* Fig. 3, a sweep (:func:`sweep_figure`): the metric against the swept setting, one line per group, the std over
  the trials of a point (seeds) as a band.

Nothing here trains, reads a run folder or imports RecBole; matplotlib is imported when a figure is drawn, on its
Agg canvas (no display, no global pyplot state). :func:`save` writes a figure as ``<stem>.png`` and
``<stem>.svg``, each atomically. The comparison (``plots: True``), a sweep study and ``scripts/plot_sweep.py`` /
``scripts/plot_similarity.py`` draw through these functions.
"""

from __future__ import annotations

import math
import os

import numpy as np

from recbole_adaptssr.files import atomic_write

FORMATS = ("png", "svg")
DPI = 150
#: the figures the comparison writes into its run folder (file stems)
TABLE2, ABLATION = "table2", "fig4_ablation"
ABLATION_BASE = "adaptssr"
SIMILARITY_KINDS = {"augmented": ("original vs augmented", "tab:red"),
                    "other_user": ("different users", "tab:blue")}


# ---------------------------------------------------------------------------------------------- drawing
def new_figure(width: float, height: float):
    """A matplotlib ``Figure`` on the Agg canvas (``constrained`` layout)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure, stem: str) -> dict:
    """Write ``figure`` as ``<stem>.png`` and ``<stem>.svg``, each atomically; ``{format: path}``."""
    return {fmt: atomic_write(f"{stem}.{fmt}", lambda f, fmt=fmt: figure.savefig(f, dpi=DPI, format=fmt))
            for fmt in FORMATS}


def _std(value) -> float:
    return 0.0 if value is None or not math.isfinite(float(value)) else float(value)


def method_colors(methods) -> dict:
    """One colour per method, in order (a method keeps its colour in every figure of a run)."""
    return {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(methods))}


def _bars(ax, groups: list, methods: list, cells: dict, labels: dict, colors: dict) -> None:
    """One group of bars per entry of ``groups``, one bar per method (``cells[(method, group)] = (mean, std)``;
    a missing cell draws no bar), with error bars, labelled for the legend."""
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        xs = [g + (i - (len(methods) - 1) / 2) * width for g, group in enumerate(groups) if (method, group) in cells]
        values = [cells[(method, group)] for group in groups if (method, group) in cells]
        ax.bar(xs, [v[0] for v in values], width, yerr=[_std(v[1]) for v in values], capsize=3,
               label=str(labels.get(method, method)), color=colors[method])
    ax.set_xticks(range(len(groups)), [str(g) for g in groups])
    ax.grid(axis="y", alpha=0.3)


def _legend_below(figure, ax, title: str) -> None:
    """The methods' legend under the panels (never over a bar) and the figure's title."""
    handles, names = ax.get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncols=min(len(names), 3), fontsize="small")
    if title:
        figure.suptitle(title)


def table2_figure(rows: list, labels: dict | None = None, title: str = "", colors: dict | None = None):
    """Table 2 as grouped bars from :func:`~recbole_adaptssr.experiment.tables.comparison_rows` (``method``,
    ``task``, ``metric``, ``mean``, ``std``): one panel per metric, a group per task, a bar per method."""
    if not rows:
        raise ValueError("Table 2's figure needs at least one row")
    labels = labels or {}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = colors or method_colors(methods)
    tasks = {}  # {metric: its tasks}, in order of first appearance
    for r in rows:
        tasks.setdefault(r["metric"], {})[r["task"]] = None
    tasks = {metric: list(names) for metric, names in tasks.items()}
    figure = new_figure(max(6.0, 1.0 * len(tasks) + 0.3 * len(rows)), 4.2)
    axes = figure.subplots(1, len(tasks), squeeze=False, width_ratios=[len(t) for t in tasks.values()])[0]
    for ax, (metric, metric_tasks) in zip(axes, tasks.items()):
        cells = {(r["method"], r["task"]): (r["mean"], r["std"]) for r in rows if r["metric"] == metric}
        _bars(ax, metric_tasks, methods, cells, labels, colors)
        ax.set_ylabel(metric)
    _legend_below(figure, axes[0], title)
    return figure


def ablation_methods(methods) -> list:
    """``adaptssr`` and its ablations (``adaptssr_*``) among ``methods``, in their order; [] unless both are there."""
    chosen = [m for m in methods if m == ABLATION_BASE or str(m).startswith(ABLATION_BASE + "_")]
    return chosen if ABLATION_BASE in chosen and len(chosen) > 1 else []


def ablation_figure(rows: list, methods: list, labels: dict | None = None, title: str = "",
                    colors: dict | None = None):
    """Fig. 4: one panel per task (its metric on the axis), one bar per method of ``methods`` (mean, std error
    bar), from the same rows as :func:`table2_figure`."""
    labels, colors = labels or {}, colors or method_colors(methods)
    rows = [r for r in rows if r["method"] in methods]
    columns = list(dict.fromkeys((r["task"], r["metric"]) for r in rows))
    if not columns:
        raise ValueError(f"Fig. 4 needs rows of the methods {methods}")
    figure = new_figure(max(6.0, len(columns) * (1.0 + 0.35 * len(methods))), 4.2)
    axes = figure.subplots(1, len(columns), squeeze=False)[0]
    for ax, (task, metric) in zip(axes, columns):
        cells = {(r["method"], task): (r["mean"], r["std"]) for r in rows if (r["task"], r["metric"]) == (task, metric)}
        _bars(ax, [task], methods, cells, labels, colors)
        ax.set_ylabel(metric)
    _legend_below(figure, axes[0], title)
    return figure


def kde(values, grid) -> np.ndarray | None:
    """``scipy.stats.gaussian_kde`` of ``values`` on ``grid`` (area 1); ``None`` when it is undefined (fewer
    than 2 distinct values)."""
    from scipy.stats import gaussian_kde

    values = np.asarray(values, dtype=np.float64)
    if len(np.unique(values)) < 2:
        return None
    try:
        return gaussian_kde(values)(grid)
    except (np.linalg.LinAlgError, ValueError):
        return None


def similarity_figure(results: dict, title: str = ""):
    """Fig. 5: one panel per checkpoint of ``results`` (``{name: {"augmented": values, "other_user": values}}``),
    the KDE of both similarity distributions over [-1, 1] (a single value: a vertical line where it lies)."""
    if not results:
        raise ValueError("Fig. 5 needs at least one checkpoint's similarities")
    grid = np.linspace(-1.0, 1.0, 401)
    figure = new_figure(3.6 * len(results), 3.0)
    axes = figure.subplots(1, len(results), squeeze=False)[0]
    for ax, (name, values) in zip(axes, results.items()):
        for kind, (label, color) in SIMILARITY_KINDS.items():
            density = kde(values[kind], grid)
            if density is None:
                ax.axvline(float(np.asarray(values[kind])[0]), color=color, label=label)
            else:
                ax.plot(grid, density, color=color, label=label)
                ax.fill_between(grid, density, color=color, alpha=0.2)
        ax.set_title(str(name))
        ax.set_xlim(-1.0, 1.0)
        ax.set_xlabel("cosine similarity")
    axes[0].set_ylabel("density")
    axes[0].legend(loc="upper left", fontsize="small")
    if title:
        figure.suptitle(title)
    return figure


def sweep_figure(series: dict, x: str, y: str, title: str = ""):
    """Fig. 3: ``series`` (``{group: [(x, mean, std, n), ...]}``, :func:`recbole_adaptssr.analysis.sweep.series`)
    as one line per group with markers, the std as a band where a point has several trials."""
    if not series:
        raise ValueError("the sweep figure needs at least one point")
    figure = new_figure(6.4, 4.2)
    ax = figure.subplots()
    markers = "osD^vPX*<>"
    for i, (name, points) in enumerate(series.items()):
        xs, means, stds = ([p[k] for p in points] for k in range(3))
        ax.plot(xs, means, marker=markers[i % len(markers)], color=f"C{i % 10}", label=str(name))
        if any(stds):
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=f"C{i % 10}", alpha=0.15)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y)
    ax.set_title(title or f"{y} vs {x.replace('_', ' ')}")
    ax.grid(alpha=0.3)
    ax.legend()
    return figure


# ---------------------------------------------------------------------------------------------- a run's files
def write_comparison_figures(rows: list, out_dir: str, labels: dict | None = None, split: str = "test") -> dict:
    """The comparison's figures in ``out_dir``: Table 2 (``table2.png``/``.svg``) and, when the rows hold
    ``adaptssr`` and an ablation of it, Fig. 4 (``fig4_ablation.png``/``.svg``); ``{"table2_png": path, ...}``."""
    if not rows:
        return {}
    seeds = sorted({int(r["n"]) for r in rows if r.get("n") is not None})
    over = f"mean ± std over {seeds[0] if len(seeds) == 1 else 'the'} seed(s)"
    colors = method_colors(r["method"] for r in rows)
    files = {f"{TABLE2}_{fmt}": path for fmt, path in save(
        table2_figure(rows, labels, f"Table 2 ({split}; {over})", colors), os.path.join(out_dir, TABLE2)).items()}
    methods = ablation_methods(list(colors))
    if methods:
        figure = ablation_figure(rows, methods, labels, f"Fig. 4: AdaptSSR's ablations ({split}; {over})", colors)
        files.update({f"{ABLATION}_{fmt}": path for fmt, path in save(figure, os.path.join(out_dir, ABLATION)).items()})
    return files

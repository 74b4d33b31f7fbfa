"""The comparison's tables (paper Table 2 and Table 3) as pure functions over :class:`RunResult` lists.

Table 2: one row per pre-training method (``RunResult.start_point``), one column per task with the task's
validation metric (the metric that picked the epoch: Acc, AUC, NDCG@10), each cell ``mean ± std`` over the seeds
of the reported split (test at the best validation epoch by default), then ``Impr (%)``: the relative improvement
over the ``none`` row (end-to-end training). The best cell of each column is bold. Below the table, a
significance test of one method (``adaptssr``) against the best other method of each task, paired over seeds.

Table 3: wall-clock pre-training time per method, mean ± std over the pre-training repeats, and how each stage
stopped (stopped by, epochs, steps, best epoch).

A cell of Table 2 with a fine-tune run, and a row of Table 3 with a pre-training stage, that stopped on a cap while
still improving (:mod:`recbole_adaptssr.stopping`) carries a dagger, explained below the table.

Nothing here trains, reads files or imports RecBole: every number comes from the lists given.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import warnings

from recbole_adaptssr.experiment.results import (
    STOPPING_COLUMNS,
    SPLITS,
    cap_footnote,
    dagger,
    stopping_cells,
    summarize,
)
from recbole_adaptssr.stopping import DAGGER, StopRecord

TESTS = ("ttest", "wilcoxon")
TEST_NAMES = {"ttest": "paired t-test (scipy.stats.ttest_rel)",
              "wilcoxon": "Wilcoxon signed-rank test (scipy.stats.wilcoxon)"}


# ---------------------------------------------------------------------------------------------- numbers
def is_smaller_better(metric: str, smaller_metrics=()) -> bool:
    """Whether a smaller ``metric`` (``ndcg@10``, ``logloss``, ...) is better: its name before ``@`` is listed."""
    return str(metric).lower().split("@")[0] in {str(m).lower() for m in smaller_metrics}


def improvement(value: float, baseline: float, smaller: bool = False) -> float | None:
    """Relative improvement (%) of ``value`` over ``baseline``: ``(value - baseline) / |baseline| * 100``
    (sign flipped for a smaller-is-better metric); ``None`` when the baseline is 0 or not finite."""
    if baseline is None or value is None or not math.isfinite(baseline) or baseline == 0:
        return None
    change = (baseline - value) if smaller else (value - baseline)
    return change / abs(baseline) * 100.0


def table_columns(results: list) -> list:
    """Table 2's columns ``(task, metric)``: each task once, with the metric that selected its best epoch
    (``RunResult.valid_metric``), in order of first appearance."""
    columns = {}
    for r in results:
        columns.setdefault(r.task, r.valid_metric)
    return list(columns.items())


def method_order(results: list, baseline: str = "none") -> list:
    """Methods in order of first appearance, ``baseline`` first when present."""
    methods = list(dict.fromkeys(r.start_point for r in results))
    return [m for m in methods if m == baseline] + [m for m in methods if m != baseline]


def comparison_rows(results: list, split: str = "test", baseline: str = "none", smaller_metrics=()) -> list:
    """Per (method, task, metric) of ``split``: :func:`summarize`'s row (``n``, ``mean``, sample ``std``,
    ``seeds``, ``values``) with ``method``, ``impr`` (% over the ``baseline`` method's mean of the same task and
    metric; ``None`` for the baseline itself or without one) and ``best`` (this mean is the best of the column;
    ties are all best)."""
    rows = []
    for row in summarize(results, split):
        row = {"method": row["start_point"], **row}
        rows.append(row)
    base = {(r["task"], r["metric"]): r["mean"] for r in rows if r["method"] == baseline}
    best = {}
    for r in rows:
        key = (r["task"], r["metric"])
        smaller = is_smaller_better(r["metric"], smaller_metrics)
        if math.isfinite(r["mean"]) and (key not in best or (r["mean"] < best[key] if smaller else r["mean"] > best[key])):
            best[key] = r["mean"]
    for r in rows:
        key = (r["task"], r["metric"])
        smaller = is_smaller_better(r["metric"], smaller_metrics)
        r["impr"] = None if r["method"] == baseline or key not in base else improvement(r["mean"], base[key], smaller)
        r["best"] = key in best and r["mean"] == best[key]
    order = {m: i for i, m in enumerate(method_order(results, baseline))}
    rows.sort(key=lambda r: order[r["method"]])  # stable: the task and metric order of summarize is kept
    return rows


# ---------------------------------------------------------------------------------------------- significance
def paired_values(results: list, method_a: str, method_b: str, task: str, metric: str, split: str = "test"):
    """``(seeds, a, b)``: the two methods' values of ``metric`` on ``task`` for the seeds both ran (same seed =
    same split of the task), in seed order."""
    def by_seed(method):
        return {r.seed: float(r.metrics(split)[metric]) for r in results
                if r.start_point == method and r.task == task and metric in r.metrics(split)}

    a, b = by_seed(method_a), by_seed(method_b)
    seeds = sorted(set(a) & set(b))
    return seeds, [a[s] for s in seeds], [b[s] for s in seeds]


def paired_test(a: list, b: list, test: str = "ttest") -> dict:
    """Two-sided paired test of ``a`` against ``b``: ``{"statistic", "pvalue", "note"}``; ``pvalue`` is ``None``
    (with a note saying why) for fewer than two pairs or when the test is undefined on these numbers."""
    from scipy import stats

    if test not in TESTS:
        raise ValueError(f"unknown significance test {test!r}; choose from {list(TESTS)}")
    n = len(a)
    if n < 2:
        return {"statistic": None, "pvalue": None, "note": f"n = {n} < 2 paired seeds: no p-value"}
    differences = [x - y for x, y in zip(a, b)]
    if all(d == 0 for d in differences):
        return {"statistic": None, "pvalue": None, "note": "identical values on every seed: no p-value"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = stats.ttest_rel(a, b) if test == "ttest" else stats.wilcoxon(a, b)
        except ValueError as error:
            return {"statistic": None, "pvalue": None, "note": f"undefined: {error}"}
    statistic, pvalue = float(result.statistic), float(result.pvalue)
    if not math.isfinite(pvalue):
        why = "the differences are constant" if test == "ttest" else "undefined on these values"
        return {"statistic": None, "pvalue": None, "note": f"no p-value: {why}"}
    return {"statistic": statistic, "pvalue": pvalue, "note": ""}


def significance(results: list, compare_method: str = "adaptssr", split: str = "test", tests=("ttest",),
                 columns=None, smaller_metrics=()) -> list:
    """For each Table 2 column (task, metric): ``compare_method`` against the best OTHER method by mean on
    ``split``, paired over the seeds both ran. One dict per column: ``task``, ``metric``, ``method``, ``versus``
    (``None`` when there is no other method), ``n``, ``seeds``, ``mean_difference`` and one entry per test
    (see :func:`paired_test`); ``note`` says why a column has no test."""
    columns = table_columns(results) if columns is None else columns
    rows = {(r["method"], r["task"], r["metric"]): r for r in comparison_rows(results, split)}
    out = []
    for task, metric in columns:
        entry = {"task": task, "metric": metric, "split": split, "method": compare_method, "versus": None, "n": 0,
                 "seeds": [], "mean_difference": None, "note": ""}
        entry.update({test: None for test in tests})
        if (compare_method, task, metric) not in rows:
            entry["note"] = f"{compare_method} did not run {task}"
            out.append(entry)
            continue
        smaller = is_smaller_better(metric, smaller_metrics)
        others = [r for (m, t, k), r in rows.items() if (t, k) == (task, metric) and m != compare_method
                  and math.isfinite(r["mean"])]
        if not others:
            entry["note"] = "no other method"
            out.append(entry)
            continue
        best = (min if smaller else max)(others, key=lambda r: r["mean"])
        seeds, a, b = paired_values(results, compare_method, best["method"], task, metric, split)
        entry.update(versus=best["method"], n=len(seeds), seeds=seeds,
                     mean_difference=statistics.fmean(x - y for x, y in zip(a, b)) if seeds else None)
        for test in tests:
            entry[test] = paired_test(a, b, test)
        out.append(entry)
    return out


# ---------------------------------------------------------------------------------------------- markdown
def _number(value, decimals):
    return "-" if value is None else f"{value:.{decimals}f}"


def _bold(text, on):
    return f"**{text}**" if on else text


def _pvalue(value):
    if value is None:
        return "-"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def comparison_markdown(results: list, split: str = "test", baseline: str = "none", compare_method: str = "adaptssr",
                        tests=("ttest",), smaller_metrics=(), percent: bool = True, decimals: int | None = None,
                        labels: dict | None = None) -> str:
    """Table 2: ``| method | <task> (<metric>) | Impr (%) | ... |``, cells ``mean ± std`` (in % when ``percent``),
    the best of each column bold, then the significance table and the footnotes."""
    decimals = (2 if percent else 4) if decimals is None else decimals
    scale = 100.0 if percent else 1.0
    columns = table_columns(results)
    rows = {(r["method"], r["task"], r["metric"]): r for r in comparison_rows(results, split, baseline, smaller_metrics)}
    methods = method_order(results, baseline)
    labels = labels or {}
    unit = ", %" if percent else ""
    header = "| method | " + " | ".join(f"{t} ({m}{unit}) | Impr (%)" for t, m in columns) + " |"
    lines = [header, "|---|" + "---|---|" * len(columns)]
    for method in methods:
        cells = []
        for task, metric in columns:
            r = rows.get((method, task, metric))
            if r is None:
                cells += ["-", "-"]
                continue
            cell = f"{r['mean'] * scale:.{decimals}f} ± {r['std'] * scale:.{decimals}f}{dagger(r)}"
            impr = "-" if r["impr"] is None else f"{r['impr']:.2f}"
            cells += [_bold(cell, r["best"]), _bold(impr, r["best"] and r["impr"] is not None)]
        lines.append(f"| {_row_label(method, labels)} | " + " | ".join(cells) + " |")

    seeds = sorted({r.seed for r in results})
    what = "test metrics at the best validation epoch" if split == "test" else "best validation metrics"
    notes = [f"{what}{' in %' if percent else ''}; mean ± sample std over {len(seeds)} seed(s) {seeds} "
             f"(every method fine-tuned with the same seeds, hence the same splits of each task)."]
    if any(m == baseline for m in methods):
        notes.append(f"Impr (%): relative improvement of the mean over the {baseline} row (end-to-end training). "
                     "Best of each column in bold.")
    else:
        notes.append(f"Impr (%): not available, no {baseline} row (add {baseline} to pretrain_methods). "
                     "Best of each column in bold.")
    sig = significance(results, compare_method, split, tests, columns, smaller_metrics)
    lines += ["", *_significance_lines(sig, compare_method, tests, labels)]
    test_text = " and ".join(TEST_NAMES[t] for t in tests)
    notes.append(f"p: two-sided {test_text} of {compare_method} against the best other method of each task "
                 f"(by mean), paired over the seeds both ran; no p-value with fewer than 2 paired seeds.")
    footnote = cap_footnote(list(rows.values()))
    if footnote:
        notes.append(footnote)
    return "\n".join(lines + [""] + notes)


def _row_label(method, labels):
    label = labels.get(method)
    return method if not label or str(label).lower() == method.lower() else f"{method} ({label})"


def _significance_lines(sig, compare_method, tests, labels):
    header = f"| task (metric) | {compare_method} vs | n | mean difference | " + " | ".join(
        f"p ({t})" for t in tests) + " |"
    lines = [header, "|---|---|---|---|" + "---|" * len(tests)]
    for e in sig:
        if e["versus"] is None:
            lines.append(f"| {e['task']} ({e['metric']}) | - | 0 | - | "
                         + " | ".join(f"- ({e['note']})" for _ in tests) + " |")
            continue
        cells = []
        for t in tests:
            res = e[t]
            cells.append(_pvalue(res["pvalue"]) if res["pvalue"] is not None else f"- ({res['note']})")
        lines.append(f"| {e['task']} ({e['metric']}) | {_row_label(e['versus'], labels)} | {e['n']} | "
                     f"{_number(e['mean_difference'], 6)} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------- Table 3
def pretrain_time_rows(times: dict, stages: dict | None = None, pretrained: dict | None = None) -> list:
    """Table 3 rows from ``{method: [seconds of each pre-training run]}``: ``n``, ``mean_s``, sample ``std_s``
    (0 for one run), ``seconds``; methods with no run (``none``) are left out. With ``pretrained`` (``{method:
    [{"stages": {stage: StageResult as a dict}}, ...]}``, one entry per run) also ``stopping``: per stage, how each
    run stopped (:func:`stage_stopping`), and ``still_improving_runs`` over all stages."""
    rows = []
    for method, seconds in times.items():
        seconds = [float(s) for s in seconds]
        if not seconds:
            continue
        stopping = stage_stopping((pretrained or {}).get(method, []))
        rows.append({"method": method, "stages": list((stages or {}).get(method, [])), "n": len(seconds),
                     "mean_s": statistics.fmean(seconds), "std_s": statistics.stdev(seconds) if len(seconds) > 1 else 0.0,
                     "seconds": seconds, "stopping": stopping,
                     "still_improving_runs": sum(s["still_improving_runs"] for s in stopping.values())})
    return rows


def stage_stopping(runs: list) -> dict:
    """``{stage: {"stopped_by": [...], "epochs_run": [...], "steps_run": [...], "best_epochs": [...],
    "still_improving_runs": k}}`` over a method's pre-training runs (each ``{"stages": {stage: dict}}``)."""
    out = {}
    for run in runs:
        for stage, values in (run.get("stages") or {}).items():
            record = StopRecord.from_dict(values)
            entry = out.setdefault(stage, {"stopped_by": [], "epochs_run": [], "steps_run": [], "best_epochs": [],
                                           "still_improving_runs": 0})
            entry["stopped_by"].append(record.stopped_by)
            entry["epochs_run"].append(record.epochs_run)
            entry["steps_run"].append(record.steps_run)
            entry["best_epochs"].append(record.best_epoch)
            entry["still_improving_runs"] += int(record.capped_while_improving())
    return out


def _stopping_text(stopping: dict) -> str:
    """``mlm: patience, 66 epochs, 462 steps, best 55; ssr†: epoch_cap, ...`` (runs of a stage joined by ``/``)."""
    def joined(values):
        return "/".join(str(v) for v in values)

    return "; ".join(f"{stage}{DAGGER if s['still_improving_runs'] else ''}: {joined(s['stopped_by'])}, "
                     f"{joined(s['epochs_run'])} epochs, {joined(s['steps_run'])} steps, "
                     f"best {joined(s['best_epochs'])}" for stage, s in stopping.items()) or "-"


def pretrain_time_markdown(rows: list, labels: dict | None = None) -> str:
    """Table 3: wall-clock pre-training time per method in hours and seconds, mean ± std over repeats, and how
    each stage stopped."""
    lines = ["| method | stages | pre-training time (h) | pre-training time (s) | runs | stopping (per stage) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        mark = DAGGER if r.get("still_improving_runs") else ""
        lines.append(f"| {_row_label(r['method'], labels or {})}{mark} | {', '.join(r['stages']) or '-'} | "
                     f"{r['mean_s'] / 3600:.3f} ± {r['std_s'] / 3600:.3f} | {r['mean_s']:.1f} ± {r['std_s']:.1f} | "
                     f"{r['n']} | {_stopping_text(r.get('stopping') or {})} |")
    lines.append("\nwall-clock time of all stages of a method (data set building, training and per-epoch "
                 "validation; a stage shared by methods, such as the MLM warm-up, counts for each), mean ± sample "
                 "std over its pre-training runs (one per seed with pretrain_repeat); "
                 "stopping: how each stage ended (patience, epoch_cap, step_cap, time_cap), the epochs and "
                 "optimizer steps it ran and its kept (best) epoch, runs joined by /.")
    if any(r.get("still_improving_runs") for r in rows):
        lines.append(f"{DAGGER} a pre-training stage of this method stopped on a cap while still improving (its "
                     "best epoch among its last stopping_step epochs): raise <stage>_epochs (or its step/time cap).")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- convergence
def convergence_rows(pretrained: dict, results: list) -> list:
    """One row per pre-training (method, stage) and per fine-tune (method, task): ``kind`` (pretrain | finetune),
    ``method``, ``name`` (stage or task), ``rule`` (a stage's stopping rule), ``runs``, ``stopped_by`` ({reason:
    count}), the median of ``epochs_run`` and of ``best_epoch``, and ``still_improving_runs``."""
    def row(kind, method, name, records, rule=""):
        return {"kind": kind, "method": method, "name": name, "rule": rule, "runs": len(records),
                "stopped_by": {reason: sum(1 for r in records if r.stopped_by == reason)
                               for reason in dict.fromkeys(r.stopped_by for r in records)},
                "median_epochs_run": statistics.median(r.epochs_run for r in records),
                "median_best_epoch": statistics.median(r.best_epoch for r in records),
                "still_improving_runs": sum(1 for r in records if r.capped_while_improving())}

    rows = []
    for method, runs in pretrained.items():
        stages = {}
        for run in runs:
            for stage, values in (run.get("stages") or {}).items():
                stages.setdefault(stage, []).append(values)
        for stage, values in stages.items():
            rows.append(row("pretrain", method, stage, [StopRecord.from_dict(v) for v in values],
                            str(values[0].get("stopping_rule", ""))))
    cells = {}
    for r in results:
        cells.setdefault((r.start_point, r.task), []).append(r.stop_record())
    rows += [row("finetune", method, task, records) for (method, task), records in cells.items()]
    return rows


def convergence_markdown(rows: list, finetune_rule: str = "", labels: dict | None = None) -> str:
    """How every stage and fine-tune cell stopped: the rule, what ended its runs, the median epochs run and best
    epoch (the figures a report quotes per stage)."""
    lines = ["| run | method | stage / task | runs | stopped by | epochs run (median) | best epoch (median) | rule |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = DAGGER if r["still_improving_runs"] else ""
        stopped = ", ".join(f"{reason or '?'} {count}" for reason, count in r["stopped_by"].items())
        rule = r["rule"] or (finetune_rule if r["kind"] == "finetune" else "")
        lines.append(f"| {r['kind']} | {_row_label(r['method'], labels or {})} | {r['name']}{mark} | {r['runs']} | "
                     f"{stopped} | {r['median_epochs_run']:g} | {r['median_best_epoch']:g} | {rule or '-'} |")
    lines.append("\nstopped by: patience (converged), epoch_cap / step_cap / time_cap (a cap ended the run); "
                 f"{DAGGER}: a run stopped on a cap while still improving (its best epoch among its last "
                 "stopping_step epochs).")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CSV
def comparison_csv(results: list, baseline: str = "none", smaller_metrics=()) -> str:
    """Every (method, task, metric) of both splits: n, mean, std, impr, best, seeds and values."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["method", "task", "metric", "split", "n", "mean", "std", "impr_percent", "best", "seeds", "values",
                     *STOPPING_COLUMNS])
    for split in SPLITS:
        for r in comparison_rows(results, split, baseline, smaller_metrics):
            writer.writerow([r["method"], r["task"], r["metric"], split, r["n"], f"{r['mean']:.6f}", f"{r['std']:.6f}",
                             "" if r["impr"] is None else f"{r['impr']:.4f}", int(r["best"]),
                             " ".join(str(s) for s in r["seeds"]), " ".join(f"{v:.6f}" for v in r["values"]),
                             *stopping_cells(r)])
    return out.getvalue()


def pretrain_time_csv(rows: list) -> str:
    """Table 3, one row per (method, stage): the method's times, and how that stage stopped in each run."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["method", "stages", "n", "mean_s", "std_s", "seconds", "stage", *STOPPING_COLUMNS])
    for r in rows:
        common = [r["method"], " ".join(r["stages"]), r["n"], f"{r['mean_s']:.3f}", f"{r['std_s']:.3f}",
                  " ".join(f"{s:.3f}" for s in r["seconds"])]
        for stage, stopping in (r.get("stopping") or {"": {}}).items():
            writer.writerow([*common, stage, *stopping_cells(stopping)])
    return out.getvalue()

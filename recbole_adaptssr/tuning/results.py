"""What a study writes into its output folder:

* ``trials.csv`` / ``trials.md``: one row per trial: its searched values, status (completed, stopped_early by the
  scheduler, failed with its error, interrupted by Ctrl-C or a lost driver while it ran, unfinished), best
  validation metric, the epoch it was reached, epochs run, pre-training epochs per stage (pre-training searches),
  seconds;
* ``best.yaml``: the best trial's settings, which ``run_recbole_adaptssr.py --config_files=best.yaml`` reruns;
* ``summary.md`` / ``summary.json``: the study (space, objective, counts, best trial, the one test evaluation);
* ``study.json``: what ``--resume`` needs (the spec, e.g. the shared pre-trained checkpoint).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time

from recbole_adaptssr.analysis.sweep import number_or_none
from recbole_adaptssr.experiment.results import atomic_write_text
from recbole_adaptssr.tuning.trial import trial_settings

FINISHED = ("completed", "stopped_early", "failed")
_RAY_STATUS = {"TERMINATED": "completed", "ERROR": "failed", "PENDING": "unfinished", "RUNNING": "unfinished",
               "PAUSED": "unfinished"}


def error_text(error) -> str:
    """``Type: message`` of a trial's exception (Ray wraps it: the cause is what the user needs), one line."""
    if error is None:
        return ""
    cause = getattr(error, "cause", None) or error
    message = str(cause).strip().splitlines()
    text = f"{type(cause).__name__}: {message[-1] if message else ''}".strip()
    if "Traceback" in text or len(text) > 300:
        text = text[:300]
    return text


def _trial_index(trial_id: str) -> int:
    try:
        return int(str(trial_id).rsplit("_", 1)[-1])
    except ValueError:
        return 0


def trial_rows(grid, spec, dims) -> list:
    """One row per trial of a Ray ``ResultGrid`` (in creation order)."""
    analysis = getattr(grid, "_experiment_analysis", None)
    trials = list(getattr(analysis, "trials", None) or [])
    rows = []
    for index in range(len(grid)):
        result = grid[index]
        trial = trials[index] if index < len(trials) else None
        metrics = dict(result.metrics or {})
        config = dict(result.config or {})
        status = _RAY_STATUS.get(getattr(trial, "status", None), None)
        if status is None:  # no Trial object (another Ray version): judge by the result
            status = "failed" if result.error else ("completed" if metrics.get("done") else "unfinished")
        elif status == "completed" and not metrics.get("done"):
            # Tune marks the trials it stops at the end of an interrupted run TERMINATED too; only a trial whose
            # function returned, or that the scheduler stopped, has a last result with done=True
            status = "interrupted"
        error = error_text(result.error) if status == "failed" else ""  # a pending trial has a "no metrics" error
        epochs = int(metrics.get("epoch") or 0)
        best_epoch = int(metrics.get("best_epoch") or 0)
        max_epochs, patience = metrics.get("max_epochs"), metrics.get("patience")
        if status == "completed" and max_epochs is not None and epochs < int(max_epochs) and (
                patience is None or epochs - best_epoch <= int(patience)):
            status = "stopped_early"  # neither finetune_epochs nor RecBole's early stopping ended it
        params = {d.name: config.get(d.name) for d in dims}
        try:
            method = trial_settings(spec, params)[1]["method"]
        except Exception:  # noqa: BLE001 - a failed trial's values may not even resolve
            method = None
        trial_id = getattr(trial, "trial_id", None) or metrics.get("trial_id") or os.path.basename(str(result.path))
        rows.append({
            "trial": str(trial_id), "status": status, "params": params, "method": method,
            "valid": number_or_none(metrics.get("best_objective")), "best_epoch": best_epoch or None, "epochs": epochs,
            "pretrain_epochs": {k[len("pretrain_epochs_"):]: int(v) for k, v in metrics.items()
                                if k.startswith("pretrain_epochs_") and v is not None},
            "seconds": number_or_none(metrics.get("time_total_s")), "error": error,
            "path": str(result.path or ""),
        })
    rows.sort(key=lambda r: _trial_index(r["trial"]))
    return rows


def best_row(rows: list, spec) -> dict | None:
    """The finished (completed or stopped early) trial with the best validation metric; ties: the earlier trial."""
    candidates = [r for r in rows if r["status"] in ("completed", "stopped_early") and r["valid"] is not None]
    if not candidates:
        return None
    sign = 1 if spec.metric_mode == "max" else -1
    return max(candidates, key=lambda r: (sign * r["valid"], -_trial_index(r["trial"])))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value)


def table_columns(rows: list, spec, dims) -> list:
    stages = list(dict.fromkeys(s for r in rows for s in r["pretrain_epochs"]))
    columns = ["trial", "status"] + [d.name for d in dims]
    if spec.mode == "pretrain":
        columns.append("method")
    columns += [f"valid {spec.metric}", "best_epoch", "epochs"] + [f"pretrain epochs {s}" for s in stages]
    return columns + ["seconds", "error"]


def row_values(row: dict, spec, dims) -> dict:
    values = {"trial": row["trial"], "status": row["status"], "method": row["method"],
              f"valid {spec.metric}": row["valid"], "best_epoch": row["best_epoch"], "epochs": row["epochs"],
              "seconds": None if row["seconds"] is None else round(row["seconds"], 1), "error": row["error"]}
    values.update({d.name: row["params"].get(d.name) for d in dims})
    values.update({f"pretrain epochs {s}": n for s, n in row["pretrain_epochs"].items()})
    return values


def trials_markdown(rows: list, spec, dims) -> str:
    columns = table_columns(rows, spec, dims)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        values = row_values(row, spec, dims)
        cells = [_cell(values.get(c)).replace("|", "\\|").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_trials(rows: list, spec, dims, folder: str) -> dict:
    """``trials.csv`` and ``trials.md`` (atomic writes)."""
    columns = table_columns(rows, spec, dims)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    for row in rows:
        values = row_values(row, spec, dims)
        writer.writerow([json.dumps(values.get(c)) if isinstance(values.get(c), (list, dict)) else
                         ("" if values.get(c) is None else values.get(c)) for c in columns])
    paths = {"trials_csv": os.path.join(folder, "trials.csv"), "trials_md": os.path.join(folder, "trials.md")}
    atomic_write_text(paths["trials_csv"], text.getvalue())
    note = (f"\nvalid {spec.metric}: the best validation epoch of each trial ({spec.task}); "
            "test metrics are not computed per trial.\n")
    atomic_write_text(paths["trials_md"], trials_markdown(rows, spec, dims) + "\n" + note)
    return paths


def reproduce_command(spec, best_yaml: str) -> str:
    return (f"python run_recbole_adaptssr.py --model={spec.model} --dataset={spec.dataset} "
            f"--config_files={best_yaml}")


def write_best_yaml(folder: str, settings: dict, spec, row: dict, study: str) -> str:
    """``best.yaml``: the best trial's settings, with a header saying where it came from and how to rerun it."""
    import yaml

    from recbole_adaptssr.compat import plain

    path = os.path.join(folder, "best.yaml")
    header = [
        f"# Best trial {row['trial']} of study {study}: valid {spec.metric} = {row['valid']:.6g} "
        f"on task {spec.task} (best epoch {row['best_epoch']}, {row['epochs']} epochs run).",
        f"# Searched: {json.dumps(plain(row['params']), default=str)}",
        "# Rerun (the same validation metric with the same seed, on the same kind of device):",
        f"#   {reproduce_command(spec, path)}",
    ]
    if row["status"] == "stopped_early":
        header.append(f"# finetune_epochs: {row['epochs']}: the scheduler stopped this trial after {row['epochs']} "
                      "epochs; the rerun trains as many.")
    if settings.get("gpu_id") == "":
        header.append("# gpu_id '' keeps the rerun on the CPU, where the trials ran (delete it to use a GPU).")
    body = yaml.safe_dump(plain(settings), sort_keys=False, default_flow_style=None, allow_unicode=True)
    atomic_write_text(path, "\n".join(header) + "\n" + body)
    return path


def write_study_record(folder: str, spec, options, name: str, path: str) -> str:
    from dataclasses import asdict

    record = {"name": name, "experiment_path": path, "spec": spec.as_dict(), "options": asdict(options),
              "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
    target = os.path.join(folder, "study.json")
    atomic_write_text(target, json.dumps(record, indent=2, default=str) + "\n")
    return target


def _count(rows: list) -> str:
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"


def summary_markdown(outcome, dims, options) -> str:
    from recbole_adaptssr.tuning import ray_compat
    from recbole_adaptssr.tuning.space import space_text

    spec = outcome.spec
    lines = [f"# Study {outcome.name}", "",
             f"* model {spec.model} on {spec.data_name}, tuned task **{spec.task}**, objective: validation "
             f"**{spec.metric}** ({spec.metric_mode}), reported after every fine-tune epoch; a trial scores its best "
             "epoch",
             f"* search: {spec.mode}" + (f" over the start point {spec.start_point or 'none'}"
                                         if spec.mode == "finetune" and spec.uses_pretext else "")
             + f"; search_alg {options.search_alg}; scheduler {options.scheduler}; {options.num_samples} sample(s) "
             "of the space",
             f"* Ray: {ray_compat.api_summary()}",
             f"* experiment (Ray storage): {outcome.experiment_path}",
             f"* trials: {len(outcome.rows)} ({_count(outcome.rows)}); wall time {outcome.seconds:.0f} s",
             "", "Space:", "", "```", space_text(dims), "```", "", "Trials:", "",
             trials_markdown(outcome.rows, spec, dims), ""]
    if outcome.interrupted:
        lines.append("**Interrupted**: continue with the same command plus `--resume` (finished trials are kept).")
    elif outcome.best is None:
        lines.append("No trial finished with a validation result.")
    else:
        best = outcome.best
        lines += [f"Best trial (selected on validation only): **{best['trial']}**, valid {spec.metric} = "
                  f"{best['valid']:.6g} (epoch {best['best_epoch']}), settings "
                  f"{json.dumps(best['params'], default=str)}",
                  "", f"Best configuration: `{outcome.files.get('best_yaml')}`; rerun: "
                  f"`{reproduce_command(spec, outcome.files.get('best_yaml'))}`"]
        rerun = outcome.rerun
        if rerun is None:
            lines.append("\nNo final test evaluation (--no_final_test).")
        else:
            valid = rerun["valid"].get(spec.metric)
            same = valid is not None and abs(valid - best["valid"]) <= 1e-6 * max(1.0, abs(best["valid"]))
            test = ", ".join(f"{k} {v:.4f}" for k, v in rerun["test"].items())
            lines += ["", f"Rerun of best.yaml through the main entry point (once, after the search): valid "
                          f"{spec.metric} = {valid:.6g} ({'reproduces' if same else 'DIFFERS FROM'} the trial's "
                          f"{best['valid']:.6g}); **test: {test}** (the only test evaluation of the study; "
                          f"{rerun['seconds']:.0f} s; run folder {rerun['run_dir']})."]
    return "\n".join(lines) + "\n"


def recbole_result_text(outcome) -> str:
    """The study in the format of RecBole's ``run_hyper.py --output_file`` (``HyperTuning.export_result``): per
    finished trial its parameters (``key:value, key:value``), ``Valid result:`` and ``Test result:`` as
    ``metric : value``. A trial is validated only: the test result is the best configuration's, from its one rerun."""
    spec, best, rerun = outcome.spec, outcome.best, outcome.rerun
    blocks = []
    for row in outcome.rows:
        if row["valid"] is None:
            continue
        params = ", ".join(f"{key}:{value}" for key, value in row["params"].items())
        if best is not None and row["trial"] == best["trial"] and rerun is not None:
            test = "    ".join(f"{key} : {value}" for key, value in rerun["test"].items())
        else:
            test = "not evaluated (a study tests its best configuration only, once)"
        blocks.append(f"{params}\nValid result:\n{spec.metric} : {row['valid']}\nTest result:\n{test}\n")
    return "\n".join(blocks)


def write_recbole_result(path: str, outcome) -> str:
    """:func:`recbole_result_text` into ``path`` (atomically); returns ``path``."""
    atomic_write_text(path, recbole_result_text(outcome))
    return path


def write_summary(outcome) -> dict:
    from dataclasses import asdict

    folder = outcome.output_dir
    paths = {"summary_md": os.path.join(folder, "summary.md"), "summary_json": os.path.join(folder, "summary.json")}
    atomic_write_text(paths["summary_md"], outcome.summary)
    payload = {"name": outcome.name, "experiment_path": outcome.experiment_path, "interrupted": outcome.interrupted,
               "spec": asdict(outcome.spec), "rows": outcome.rows, "best": outcome.best, "rerun": outcome.rerun,
               "seconds": outcome.seconds, "files": outcome.files}
    atomic_write_text(paths["summary_json"], json.dumps(payload, indent=2, default=str) + "\n")
    return paths

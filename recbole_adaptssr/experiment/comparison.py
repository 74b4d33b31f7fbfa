"""The paper's comparison as one command (Table 2 and Table 3): ``--pretrain_methods="[none,mlm,adaptssr]"``.

A pre-training *method* is a named recipe: a list of pretext-task stages plus setting overrides, defined in
``properties/methods.yaml`` (package data) and in the user's own YAML files named by ``pretrain_methods_file``
(same format; a user method replaces a packaged one of the same name). :func:`run_comparison`

1. resolves every method of ``pretrain_methods`` and validates it BEFORE anything trains: its pretext tasks are
   looked up by name (lazily: a method whose task module is missing fails naming the method and the task), its
   settings must be known keys, and its Config (``config.derive(pretrain_stages=..., **settings)``) passes the
   experiment's :func:`check_pretraining` and :func:`check_finetuning`; its settings are read once
   (:class:`ComparisonSettings`);
2. compiles a plan of units (:func:`compile_comparison`): each method's pre-training stage units, once with
   ``seed`` (or once per fine-tune seed with ``pretrain_repeat: True``, so the std also covers pre-training), an
   identical stage prefix of two methods being one unit (the MLM warm-up of ``mlm``, ``adaptssr`` and its
   ablations); then a fine-tune unit per method, selected task and seed ``seed, ..., seed+repeat-1`` from the
   method's ``finetune_from`` stage (the same seeds, hence the same task splits, for every method: the runs are
   paired);
3. runs the plan in ONE run folder (:func:`~recbole_adaptssr.experiment.lifecycle.run_plan`: ``executor``,
   ``resume``), a folder per unit under ``units/``;
4. logs Table 2, Table 3 (a method's pre-training time: the wall time of its stage units) and the convergence
   table, built from the finished units (partial, and said so, when some failed), then writes ``comparison.md``,
   ``comparison.json``, ``comparison.csv`` and ``pretrain_time.csv`` atomically into the run folder, and Fig. 5's
   similarity numbers of every method's checkpoint (``similarity/``, :mod:`recbole_adaptssr.analysis.similarity`) and,
   with ``plots: True``, the figures (:mod:`recbole_adaptssr.analysis.figures`): Table 2's bars, Fig. 4 when
   AdaptSSR's ablations ran, Fig. 5, as PNG and SVG.

Settings (``properties/overall.yaml``): ``pretrain_methods`` (list), ``pretrain_methods_file`` (path or list of
paths), ``pretrain_repeat``, ``compare_method``, ``significance_wilcoxon``, ``report_split``,
``similarity_users``, ``plots``; the like-for-like options ``baseline_warmup`` (every method without an ``mlm`` stage gets
the MLM warm-up first, unless it sets ``warmup: False``), ``contrastive_similarity`` / ``contrastive_temperature``
(one contrastive form for the InfoNCE family, read by the pretext tasks) and ``pretrain_budget_steps`` /
``pretrain_budget_seconds`` (the same pre-training budget for every method, read by :func:`pretrain`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from logging import getLogger

from recbole_adaptssr import setting_checks, setting_keys
from recbole_adaptssr.analysis.figures import write_comparison_figures
from recbole_adaptssr.config import as_list
from recbole_adaptssr.execution import Plan
from recbole_adaptssr.experiment import tables
from recbole_adaptssr.experiment.lifecycle import load_task_data, run_data, run_plan, warn_overridden
from recbole_adaptssr.experiment.results import SPLITS, atomic_write_text
from recbole_adaptssr.experiment.settings import RunSettings
from recbole_adaptssr.experiment.units import FINETUNE, PRETRAIN_STAGE, finetune_unit, pretrain_chain, run_result, \
    stage_results
from recbole_adaptssr.names import check_plain_name
from recbole_adaptssr.plugins import properties_file
from recbole_adaptssr.setting_errors import SettingError
from recbole_adaptssr.settings_report import settings_report
from recbole_adaptssr.stopping import RULE_KEYS, StoppingRule

METHODS_FILE = "methods.yaml"
METHOD_FIELDS = ("stages", "settings", "finetune_from", "extends", "label", "description", "warmup")
#: baseline_warmup: none (each method as its paper) | mlm (the MLM warm-up of AdaptSSR before every other method)
WARMUPS = ("none", "mlm")
WARMUP_STAGE = "mlm"
# settings a method may not set: the comparison itself decides them (or they are the method's own fields)
RESERVED = ("pretrain_stages", "finetune_from", "pretrain_methods", "pretrain_methods_file", "pretrain_repeat",
            "compare_method", "significance_wilcoxon", "report_split", "checkpoint_dir", "seed", "repeat",
            "downstream_task", "downstream_tasks", "model", "dataset", "data_path", "train_stage", "baseline_warmup",
            "pretrain_budget_steps", "pretrain_budget_seconds", "similarity_users")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Method:
    """A pre-training recipe: stages in order, setting overrides, the stage fine-tuning starts from."""

    name: str
    stages: list
    settings: dict = field(default_factory=dict)
    finetune_from: str | None = None
    label: str = ""
    description: str = ""
    source: str = ""
    warmup: bool = True  # takes the MLM warm-up under baseline_warmup: mlm (adaptssr_no_mlm: False)


# ---------------------------------------------------------------------------------------------- method files
def read_methods_file(path: str) -> dict:
    """``{name: raw entry}`` of one methods YAML (top-level key ``methods:``)."""
    import yaml

    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrain_methods_file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            raise SettingError(f"{path}: not valid YAML: {error}") from error
    methods = data.get("methods") if isinstance(data, dict) else None
    if not isinstance(methods, dict):
        raise SettingError(f"{path}: expected a mapping under the top-level key 'methods:' (see docs/comparison.md)")
    out = {}
    for name, entry in methods.items():
        name = str(name)
        if not NAME.match(name):
            raise SettingError(f"{path}: method name {name!r} may only use letters, digits, '_', '.' and '-'")
        check_plain_name(name, "method", where=path)
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise SettingError(f"{path}: method {name!r} must be a mapping with keys {list(METHOD_FIELDS)}")
        unknown = [k for k in entry if k not in METHOD_FIELDS]
        if unknown:
            raise SettingError(f"{path}: method {name!r} has unknown key(s) {unknown}; allowed: {list(METHOD_FIELDS)}")
        out[name] = {**entry, "_source": path}
    return out


def methods_table(files=()) -> dict:
    """The packaged methods, then each of ``files`` in order (a later definition of a name replaces it)."""
    table = read_methods_file(properties_file(METHODS_FILE))
    for path in files or ():
        table.update(read_methods_file(str(path)))
    return table


def resolve_method(name: str, table: dict) -> Method:
    """The :class:`Method` called ``name`` in ``table``, its ``extends`` chain applied."""
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SettingError(f"unknown pre-training method {name!r} in pretrain_methods; known: {sorted(table)}{hint} "
                           "(define your own in a YAML named by pretrain_methods_file, see docs/comparison.md)")
    chain, current = [], name
    while current is not None:
        if current in chain:
            raise SettingError(f"method {name!r}: 'extends' loops through {chain + [current]}")
        if current not in table:
            raise SettingError(f"method {chain[-1]!r} extends unknown method {current!r}")
        chain.append(current)
        current = table[current].get("extends")
        current = None if current is None else str(current)
    merged = {"settings": {}}
    for entry_name in reversed(chain):  # the base first, this method last
        entry = table[entry_name]
        settings = entry.get("settings") or {}
        if not isinstance(settings, dict):
            raise SettingError(f"method {entry_name!r}: settings must be a mapping of setting -> value, "
                               f"got {settings!r}")
        merged["settings"] = {**merged["settings"], **settings}
        for key in ("stages", "finetune_from", "warmup"):
            if key in entry:
                merged[key] = entry[key]
    entry = table[name]
    if "stages" not in merged:
        raise SettingError(f"method {name!r} ({entry['_source']}) has no stages (use stages: [] for no pre-training)")
    stages = merged["stages"]
    if stages is None:
        stages = []
    if isinstance(stages, str):
        stages = as_list(stages)
    if not isinstance(stages, list) or not all(isinstance(s, str) and s for s in stages):
        raise SettingError(f"method {name!r}: stages must be a list of pretext task names, got {merged['stages']!r}")
    start = merged.get("finetune_from")
    if start is None:
        start = stages[-1] if stages else None
    elif str(start) not in stages:
        raise SettingError(f"method {name!r}: finetune_from {start!r} is not one of its stages {stages}")
    reserved = [key for key in merged["settings"] if key in RESERVED]
    if reserved:
        raise SettingError(f"method {name!r}: settings may not set {reserved} (the comparison sets them; stages are "
                           "the method's 'stages' key)")
    warmup = merged.get("warmup", True)
    if not isinstance(warmup, bool):
        raise SettingError(f"method {name!r}: warmup must be True or False, got {warmup!r}")
    return Method(name=name, stages=list(stages), settings=dict(merged["settings"]),
                  finetune_from=None if start is None else str(start), label=str(entry.get("label") or name),
                  description=str(entry.get("description") or ""), source=entry["_source"], warmup=warmup)


def with_warmup(method: Method, warmup: str) -> Method:
    """``method`` under ``baseline_warmup``: with ``mlm``, a method that pre-trains without an ``mlm`` stage (and
    does not refuse one: ``warmup: False``) runs the MLM warm-up first, as AdaptSSR does; fine-tuning still starts
    from its own last stage."""
    if warmup not in WARMUPS:
        raise SettingError(f"baseline_warmup must be one of {list(WARMUPS)}, got {warmup!r}")
    if warmup == "none" or not method.stages or WARMUP_STAGE in method.stages or not method.warmup:
        return method
    return dataclasses.replace(method, stages=[WARMUP_STAGE, *method.stages],
                               finetune_from=method.finetune_from or method.stages[-1])


def selected_methods(config) -> list:
    """The :class:`Method` of every name in ``pretrain_methods`` (unknown names and duplicates fail here)."""
    names = as_list(config["pretrain_methods"]) or []
    names = [str(n) for n in names]
    if not names:
        raise SettingError("pretrain_methods is empty: name at least one method, "
                           "e.g. --pretrain_methods=[none,adaptssr]")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SettingError(f"pretrain_methods lists {duplicates} more than once")
    files = as_list(config["pretrain_methods_file"]) or []
    table = methods_table([str(f) for f in files])
    warmup = config["baseline_warmup"]
    return [with_warmup(resolve_method(name, table), warmup) for name in names]


# ---------------------------------------------------------------------------------------------- validation
def _lookup_tasks(method: Method, modules) -> None:
    from recbole_adaptssr.pretext.base import get_pretext_task

    for stage in method.stages:
        try:
            get_pretext_task(stage, modules)
        except (ValueError, ImportError) as error:
            raise SettingError(f"pre-training method {method.name!r} (stages {method.stages}): {error}") from error


def _check_setting_names(method: Method, stage_config) -> None:
    """Every setting of a method is a known key (:mod:`recbole_adaptssr.setting_keys`), of its declared shape."""
    where = f"method {method.name!r} of {method.source}"
    setting_keys.check_known({where: method.settings}, method.stages, stage_config.internal_config_dict)
    problems = setting_keys.shape_errors(method.settings, where, method.stages)
    if problems:
        raise SettingError(f"pre-training method {method.name!r}: {'; '.join(problems)}")


def method_config(config, method: Method):
    """The Config of one method: the run's Config with ``pretrain_stages`` and the method's settings above the
    command line."""
    return config.derive(pretrain_stages=list(method.stages), **method.settings)


def check_methods(config, methods: list, task_data, tasks: list) -> dict:
    """Validate every method (its tasks, setting names, pre-training and fine-tuning settings) and return
    ``{name: Config}``. Raises ``SettingError`` (a ``ValueError``) naming the method before anything is trained."""
    from recbole_adaptssr.experiment.validation import check_finetuning, check_pretraining

    uses_pretext = getattr(config.model_class, "uses_pretext_tasks", False)
    configs = {}
    for method in methods:
        if method.stages and not uses_pretext:
            raise SettingError(f"pre-training method {method.name!r} needs a model with pretext tasks (AdaptSSR); "
                               f"{config['model']} has none")
        modules = as_list(method.settings.get("pretext_modules", config["pretext_modules"])) or []
        _lookup_tasks(method, modules)
        try:
            _check_setting_names(method, config.derive(pretrain_stages=list(method.stages)))
            cfg = method_config(config, method)
            if method.stages:
                check_pretraining(cfg)
            check_finetuning(cfg, task_data, tasks, ["none"])
        except ValueError as error:
            if str(error).startswith(f"pre-training method {method.name!r}"):
                raise
            raise SettingError(f"pre-training method {method.name!r}: {error}") from error
        configs[method.name] = cfg
    setting_checks.check(lambda key: config[key], setting_checks.COMPARISON)
    return configs


# ---------------------------------------------------------------------------------------------- the command
def like_for_like(config) -> dict:
    """What the rows share beyond the encoder, the data and the seeds (docs/comparison.md, "Like for like")."""
    steps, seconds = config["pretrain_budget_steps"], config["pretrain_budget_seconds"]
    similarity, temperature = config["contrastive_similarity"], config["contrastive_temperature"]
    return {
        "warm-up": "MLM before every method" if config["baseline_warmup"] == "mlm" else "each method's own (paper)",
        "contrastive form": (f"similarity {similarity or 'per task'}, temperature {temperature or 'per task'}"
                             if similarity or temperature else "each task's own (paper)"),
        "budget": (f"{steps} steps" if steps is not None else f"{seconds} s" if seconds is not None
                   else "each stage until converged"),
    }


def finetune_rule(config) -> StoppingRule:
    """The stopping rule of the fine-tune runs (``finetune_<key>`` over ``<key>``)."""
    from recbole_adaptssr.experiment.finetuning import FINETUNE, prefixed_overrides

    general = {key: config[key] for key in RULE_KEYS}
    return StoppingRule.from_settings({**general, **prefixed_overrides(config, FINETUNE + "_")})


def similarity_numbers(config, methods: list, pretrained: dict, run_dir: str) -> dict:
    """Fig. 5's numbers from the comparison's own checkpoints (each method's fine-tuning start point, first
    pre-training run): ``similarity_users`` users of the data set, their augmented views and a random other user
    (:func:`recbole_adaptssr.analysis.similarity.analyse`), written as CSV into ``<run_dir>/similarity/`` with
    the figure (``plots``). Returns the files written ({} when off or no method pre-trains)."""
    from recbole_adaptssr.analysis import similarity

    users = int(config["similarity_users"])
    checkpoints = {m.name: pretrained[m.name][0]["stages"][m.finetune_from]["checkpoint"]
                   for m in methods if m.stages and pretrained.get(m.name)}
    if not users or not checkpoints:
        return {}
    folder = str(config["data_path"]).rstrip(os.sep)
    results = similarity.analyse(checkpoints, os.path.dirname(folder), os.path.basename(folder), users=users,
                                 seed=int(config["seed"]), device=config["device"])
    files = similarity.write_outputs(results, os.path.join(run_dir, "similarity"), figure=config["plots"])
    getLogger().info("Fig. 5 (similarity of a user to its augmented view / to another user, mean): " + "; ".join(
        f"{name} {values['augmented'].mean():.4f} / {values['other_user'].mean():.4f}"
        for name, values in results.items()) + f" ({files['summary']})")
    return files


def _smaller_metrics() -> tuple:
    try:
        from recbole.evaluator.register import smaller_metrics
    except ImportError:  # pragma: no cover - RecBole always has it
        return ()
    return tuple(smaller_metrics)


@dataclass(frozen=True)
class ComparisonSettings:
    """What the comparison reads of its Config, once, checked (see the module docstring)."""

    run: RunSettings
    methods: tuple  # Method, in pretrain_methods' order
    tasks: tuple
    pretrain_repeat: bool
    compare_method: str
    tests: tuple  # ttest, and wilcoxon with significance_wilcoxon
    similarity_users: int
    like_for_like: dict
    finetune_rule: str

    @classmethod
    def from_config(cls, config, methods, tasks) -> "ComparisonSettings":
        return cls(run=RunSettings.from_config(config), methods=tuple(methods), tasks=tuple(tasks),
                   pretrain_repeat=bool(config["pretrain_repeat"]), compare_method=str(config["compare_method"]),
                   tests=("ttest", "wilcoxon") if config["significance_wilcoxon"] else ("ttest",),
                   similarity_users=int(config["similarity_users"]), like_for_like=like_for_like(config),
                   finetune_rule=finetune_rule(config).describe())


def compile_comparison(settings: ComparisonSettings) -> tuple:
    """``(plan, rows, chains)``: every method's pre-training stage units (one chain, or one per fine-tune seed with
    ``pretrain_repeat``; ``chains``: ``{method: [(seed, {stage: unit id})]}``) and a fine-tune unit per method x
    task x seed from the method's ``finetune_from`` stage; ``rows`` maps a fine-tune unit to its ``(method, task,
    seed)`` rows. Identical units are one (the MLM warm-up shared by ``mlm``, ``adaptssr`` and its ablations)."""
    run = settings.run
    plan, rows, chains = Plan(), {}, {}
    for method in settings.methods:
        own = {**run.units, **method.settings}
        pretrain_seeds = list(run.seeds) if settings.pretrain_repeat else [run.seed]
        chains[method.name] = [(seed, pretrain_chain(plan, run.model, run.dataset, own, method.stages, seed,
                                                     label=method.name))
                               for seed in (pretrain_seeds if method.stages else [])]
        starts = {seed: chain for seed, chain in chains[method.name]}
        for task in settings.tasks:
            for seed in run.seeds:
                chain = starts.get(seed if settings.pretrain_repeat else run.seed)
                start = ("stage", chain[method.finetune_from]) if chain else None
                unit = finetune_unit(run.model, run.dataset, {**own, "pretrain_stages": list(method.stages)}, task,
                                     seed, start, title=f"{method.name}: {task}, seed {seed}")
                rows.setdefault(plan.add(unit), []).append((method.name, task, seed))
    return plan, rows, chains


def run_comparison(config) -> dict:
    """Validate every method, pre-train each, fine-tune every task from each over ``repeat`` seeds, and write
    Table 2 and Table 3 into one run folder (see the module docstring). Returns what was done."""
    from recbole_adaptssr.data.validation import validate_data
    from recbole_adaptssr.experiment.validation import check_dataset, check_settings, selected_tasks

    check_dataset(config)
    check_settings(config)
    methods = selected_methods(config)  # unknown names fail here, before anything else
    task_data = load_task_data(config, required=True)
    tasks = selected_tasks(config, task_data)
    configs = check_methods(config, methods, task_data, tasks)
    checks = validate_data(config, task_data, tasks)  # before the run folder
    settings = ComparisonSettings.from_config(config, methods, tasks)
    plan, rows, chains = compile_comparison(settings)

    def notes():
        logger, user = getLogger(), settings.run.recorded
        logger.info("pre-training methods: " + "; ".join(
            f"{m.name}: stages {m.stages}" + (f", settings {m.settings}" if m.settings else "") for m in methods))
        for key in ("pretrain_stages", "finetune_from"):
            if key in user:
                logger.warning(f"your setting {key}={user[key]!r} is replaced by each method's stages "
                               f"in a comparison (pretrain_methods)")
        for method in methods:
            for key, value in method.settings.items():
                if key in user and user[key] != value:
                    logger.warning(f"method {method.name} sets {key}={value!r} above your {key}={user[key]!r}")
        if settings.compare_method not in {m.name for m in methods}:
            logger.warning(f"compare_method {settings.compare_method!r} is not among pretrain_methods: no "
                           "significance test")
        logger.info("like for like: " + "; ".join(f"{k}: {v}" for k, v in settings.like_for_like.items()))

    def report(run_dir, outcome, writer) -> dict:
        return comparison_tables(config, settings, plan, rows, chains, run_dir, outcome)

    return run_plan(config, settings.run, plan, report, command="comparison",
                    prefix=f"{settings.run.model}-{settings.run.dataset}", data=run_data(config, tasks),
                    checks=checks, notes=notes,
                    listing=lambda: settings_report(config, task_data, tasks,
                                                    {m.name: (configs[m.name], m.stages) for m in methods}))


def pretraining_runs(settings: ComparisonSettings, plan, chains: dict, run_dir: str, outcome) -> dict:
    """``{method: [{"seed", "seconds", "stages": {stage: StageResult as a dict}}]}`` of every chain whose last unit
    finished; ``seconds``: the wall time of the chain's units (a unit shared by methods counts for each, as each
    method would have trained it)."""
    finished = {unit.id: payload for unit, payload in outcome.payloads(plan, PRETRAIN_STAGE)}
    out = {}
    for method in settings.methods:
        out[method.name] = []
        for seed, chain in chains[method.name]:
            last = chain[method.stages[-1]]
            if last in finished:
                stages = stage_results(finished[last], run_dir)
                seconds = sum(outcome.results[unit_id].seconds for unit_id in chain.values())
                out[method.name].append({"seed": seed, "seconds": seconds,
                                         "stages": {s: asdict(r) for s, r in stages.items()}})
    return out


def comparison_tables(config, settings: ComparisonSettings, plan, rows: dict, chains: dict, run_dir: str,
                      outcome) -> dict:
    """Table 2, Table 3 and the convergence table of the finished units (partial when some failed), Fig. 5's
    numbers; logged, then written: ``comparison.md``, ``comparison.json``, ``comparison.csv``,
    ``pretrain_time.csv`` and ``similarity/``."""
    from recbole.utils import set_color


    logger = getLogger()
    methods, split, compare_method, tests = settings.methods, settings.run.report_split, settings.compare_method, \
        settings.tests
    pretrained = pretraining_runs(settings, plan, chains, run_dir, outcome)
    times = {name: [run["seconds"] for run in runs] for name, runs in pretrained.items()}
    runs = [run_result(payload, run_dir, method) for unit, payload in outcome.payloads(plan, FINETUNE)
            for method, _, _ in rows[unit.id]]
    warn_overridden(runs, {m.name: m.settings for m in methods})
    similarity_files = similarity_numbers(config, methods, pretrained, run_dir)
    labels = {m.name: m.label for m in methods}
    smaller = _smaller_metrics()
    stage_lists = {m.name: m.stages for m in methods}
    time_rows = tables.pretrain_time_rows(times, stage_lists, pretrained)
    time_table = tables.pretrain_time_markdown(time_rows, labels)
    if settings.run.executor.executor != "serial":
        time_table += (f"\nunits ran side by side (executor: {settings.run.executor.executor}): these times are "
                       "comparable only when each unit had its machine or GPU to itself.")
    table = (tables.comparison_markdown(runs, split, "none", compare_method, tests, smaller, labels=labels)
             if runs else "no fine-tune run finished (or no downstream task selected): no Table 2")
    convergence = tables.convergence_rows(pretrained, runs)
    convergence_table = tables.convergence_markdown(convergence, settings.finetune_rule, labels)
    logger.info(set_color("Table 2", "yellow") + f" ({run_dir}):\n{table}")
    logger.info(set_color("Table 3", "yellow") + f" (pre-training time):\n{time_table}")
    logger.info(set_color("Convergence", "yellow") + f":\n{convergence_table}")
    for row in convergence:
        if row["still_improving_runs"]:
            logger.warning(f"† {row['kind']} {row['method']} {row['name']}: {row['still_improving_runs']} of "
                           f"{row['runs']} run(s) stopped on a cap while still improving (see Convergence)")

    columns = tables.table_columns(runs)
    payload = {
        "model": settings.run.model, "dataset": settings.run.dataset, "run_dir": run_dir, "split": split,
        "seeds": list(settings.run.seeds), "pretrain_repeat": settings.pretrain_repeat,
        "compare_method": compare_method, "tests": list(tests), "methods": {m.name: asdict(m) for m in methods},
        "settings": settings.run.recorded, "columns": [list(c) for c in columns],
        "table2": {s: tables.comparison_rows(runs, s, "none", smaller) for s in SPLITS},
        "significance": {s: tables.significance(runs, compare_method, s, tests, columns, smaller) for s in SPLITS},
        "table3": time_rows, "pretrain": pretrained, "runs": [r.as_dict() for r in runs],
        "like_for_like": settings.like_for_like, "similarity": similarity_files, "convergence": convergence,
        "complete": outcome.ok,
    }
    files = {"md": os.path.join(run_dir, "comparison.md"), "json": os.path.join(run_dir, "comparison.json"),
             "csv": os.path.join(run_dir, "comparison.csv"), "time_csv": os.path.join(run_dir, "pretrain_time.csv")}
    like = "; ".join(f"{k}: {v}" for k, v in settings.like_for_like.items())
    partial = "" if outcome.ok else ("**Partial**: some units failed or did not run (see the run's log); resume "
                                     "the run to complete the tables.\n\n")
    markdown = (f"# Pre-training methods compared: {settings.run.model} on {settings.run.dataset}\n\n{partial}"
                f"Like for like: {like}.\n\n"
                f"## Downstream performance (Table 2)\n\n{table}\n\n## Pre-training time (Table 3)\n\n{time_table}\n"
                f"\n## Convergence\n\n{convergence_table}\n")
    atomic_write_text(files["md"], markdown)
    atomic_write_text(files["json"], json.dumps(payload, indent=2, default=str))
    atomic_write_text(files["csv"], tables.comparison_csv(runs, "none", smaller))
    atomic_write_text(files["time_csv"], tables.pretrain_time_csv(time_rows))
    if config["plots"]:
        files.update(write_comparison_figures(payload["table2"][split], run_dir, labels, split))
    logger.info(f"comparison written: {', '.join(files.values())}")
    return {"methods": list(methods), "pretrain": pretrained, "times": times, "runs": runs, "table": table,
            "time_table": time_table, "files": files, "convergence": convergence,
            "convergence_table": convergence_table, "significance": payload["significance"][split],
            "rows": payload["table2"][split]}

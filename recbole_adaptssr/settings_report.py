"""The settings a run uses, as the text our commands log at startup (in place of RecBole's ``print(config)``, which
lists RecBole's defaults whether or not anything reads them: its ``metrics``, ``topk``, ``valid_metric`` and
``eval_args`` apply to no run of our pipeline, each task kind has its own).

:func:`settings_report` writes, from a :class:`~recbole_adaptssr.config.Config`:

* **your settings**: what you set (config files < ``config_dict`` < command line);
* **run**: the run-wide settings (model, data, device, seeds, stages, start points, tasks, split);
* **user model**: its backbone and shape, through the backbone's view (``<backbone>_<key>`` over ``<key>``);
* **pre-training stage S**, per stage (in a comparison: per method and stage): the value each key has for that
  stage (its :class:`~recbole_adaptssr.pretext.base.StageSettings` view: ``S_<key>`` over ``<key>``): the
  trainer's keys (:data:`STAGE_KEYS`), the keys its pretext task reads (what its ``check_settings`` reads) and its
  own ``S_*`` keys;
* **fine-tuning**: the downstream runs' keys (``finetune_<key>`` over ``<key>``);
* **task kind K**, per kind of the run's tasks: its metrics, topk, valid metric, evaluation mode and split.

A value that comes from a more specific key names it (``learning_rate = 0.0005  <- mlm_learning_rate``); one you
set is marked ``(yours)``. RecBole's own models on RecBole's protocol keep RecBole's listing (they use its
``metrics`` and ``epochs``).
"""

from __future__ import annotations

import os

#: the run-wide settings, in this order (those the Config has)
RUN_KEYS = ("model", "dataset", "data_path", "checkpoint_dir", "device", "seed", "reproducibility", "torch_threads",
            "repeat", "pretrain_stages", "finetune_from", "downstream_task", "downstream_tasks", "task_split",
            "task_train_share", "report_split", "pretrain_valid_ratio", "train_batch_size", "eval_batch_size",
            "behaviour_vocabulary", "sequence_cache", "duplicate_rows", "plots", "show_progress", "state")
#: the comparison's settings (when ``pretrain_methods`` is set)
COMPARISON_KEYS = ("pretrain_methods", "pretrain_methods_file", "pretrain_repeat", "compare_method",
                   "significance_wilcoxon", "similarity_users", "baseline_warmup", "contrastive_similarity",
                   "contrastive_temperature", "pretrain_budget_steps", "pretrain_budget_seconds")
#: the user model's settings, through the backbone's view
USER_MODEL_KEYS = ("hidden_size", "n_layers", "n_heads", "inner_size", "hidden_act", "layer_norm_eps",
                   "initializer_range", "MAX_ITEM_LIST_LENGTH")
#: what the trainer reads per stage (AdaptSSRTrainer.train_stage, AdaptSSR.set_stage, the stopping rule)
STAGE_KEYS = ("epochs", "learning_rate", "weight_decay", "hidden_dropout_prob", "attn_dropout_prob", "valid_metric",
              "stopping_step", "stopping_steps", "min_epochs", "max_steps", "max_seconds", "precision")
#: what a downstream run reads (finetune_<key> over <key>), and what our models' runs read besides
FINETUNE_KEYS = ("epochs", "learning_rate", "train_batch_size", "weight_decay", "stopping_step", "stopping_steps",
                 "max_steps", "max_seconds", "precision")
FINETUNE_MODEL_KEYS = ("hidden_dropout_prob", "attn_dropout_prob", "head_hidden_size", "head_dropout_prob")
FINETUNE = "finetune"


class _ReadKeys:
    """A settings view that records the keys read through it (``check_settings(view)`` tells what a task reads)."""

    def __init__(self, view):
        self.view, self.read = view, []

    def key(self, key):
        self.read.append(key)
        return self.view.key(key)

    def __getitem__(self, key):
        self.read.append(key)
        return self.view[key]

    def get(self, key, default=None):
        self.read.append(key)
        return self.view.get(key, default)

    def __contains__(self, key):
        self.read.append(key)
        return key in self.view


def _keys_read(check, view) -> list:
    recorder = _ReadKeys(view)
    try:
        check(recorder)
    except Exception:  # noqa: BLE001 - a bad value is the validation's to report; the keys read so far stand
        pass
    return list(dict.fromkeys(recorder.read))


def _format(value) -> str:
    return "None" if value is None else str(value)


def _line(key: str, value, source: str | None, user: dict) -> str:
    from recbole.utils import set_color

    origin = source if source and source != key else None
    note = "  <- " + origin if origin else ""
    if (origin or key) in user:
        note += " (yours)"
    return set_color(key, "cyan") + " = " + set_color(_format(value), "yellow") + note


def _section(title: str, lines: list) -> str:
    from recbole.utils import set_color

    return set_color(title, "pink") + "\n" + "\n".join(lines) if lines else ""


def _plain_lines(config, keys, user) -> list:
    return [_line(key, config[key], None, user) for key in keys if key in config]


def _view_lines(config, view, prefix: str, keys, user, overrides_only: bool = False) -> list:
    """``key = value`` for ``keys`` and every ``<prefix>_<key>`` the Config has (with ``overrides_only``: only
    those whose ``<key>`` is a setting too), each through ``view``."""
    own = [k[len(prefix) + 1:] for k in config.final_config_dict if k.startswith(prefix + "_")]
    if overrides_only:
        own = [k for k in own if k in config.final_config_dict]
    lines = []
    for key in dict.fromkeys([*keys, *own]):
        if key in view:
            name = view.key(key)
            lines.append(_line(key, config[name], name, user))
    return lines


def _stage_section(config, stage: str, user, title: str = "") -> str:
    from recbole_adaptssr.pretext.base import PretextTask, StageSettings, get_pretext_task

    view = StageSettings(config, stage)
    keys = list(STAGE_KEYS)
    try:
        task_class = get_pretext_task(stage, config["pretext_modules"] or [])
    except (ValueError, ImportError):
        task_class = None
    if task_class is not None:  # what the task itself reads, beyond what every task's check reads
        common = set(_keys_read(lambda v: PretextTask.check_settings.__func__(task_class, v), view))
        keys += [k for k in _keys_read(task_class.check_settings, view) if k not in common]
    return _section(title or f"Pre-training stage {stage}:", _view_lines(config, view, stage, keys, user))


def _user_model_section(config, user) -> str:
    from recbole_adaptssr.encoder.base import get_user_model

    name = config["user_model"]
    try:
        backbone = get_user_model(name)
    except (ValueError, ImportError):
        return ""
    view = backbone.settings(config)
    lines = _plain_lines(config, ("user_model", "user_model_pooling"), user)
    lines += _view_lines(config, view, backbone.prefix(), USER_MODEL_KEYS, user)
    return _section(f"User model ({name}):", lines)


def _recbole_model_section(config, user) -> str:
    import yaml

    from recbole_adaptssr.setting_keys import _recbole_root

    path = os.path.join(_recbole_root(), "properties", "model", f"{config['model']}.yaml")
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8") as f:
        keys = list((yaml.safe_load(f) or {}).keys())
    return _section(f"Model {config['model']} (RecBole's):", _plain_lines(config, keys, user))


def _kind_sections(config, task_data, tasks, user) -> list:
    from recbole_adaptssr.downstream.base import builtin_task_kinds, get_task_kind
    from recbole_adaptssr.pretext.base import StageSettings

    if tasks is None:  # no run at hand: every kind
        kinds = {get_task_kind(name): [] for name in builtin_task_kinds()}
    else:
        kinds = {}
        for task in tasks if task_data is not None else []:
            kinds.setdefault(task_data.kind(task), []).append(task)
    sections = []
    for kind, kind_tasks in kinds.items():
        settings = kind.evaluation_settings(config)
        if settings["eval_mode"] != "full":  # a labelled task is scored per sample: no top-k list applies
            settings.pop("topk", None)
        view = StageSettings(config, kind.name)
        title = f"Task kind {kind.name}" + (f" ({', '.join(kind_tasks)})" if kind_tasks else "") + ":"
        sections.append(_section(title, [_line(key, value, view.key(key), user) for key, value in settings.items()]))
    return sections


def settings_report(config, task_data=None, tasks=None, methods=None) -> str:
    """The settings ``config``'s run uses (see the module docstring). ``task_data`` and ``tasks``: the run's
    tasks (their kinds are listed; without ``tasks``: every built-in kind); ``methods``: a comparison's ``{method: (its
    Config, its stages)}``, whose stages are listed per method (default: the stages of ``pretrain_stages``)."""
    from recbole_adaptssr.pretext.base import StageSettings

    user = dict(getattr(config, "user_config_dict", {}) or {})
    ours = bool(getattr(config.model_class, "uses_pretext_tasks", False))
    pipeline = ours or bool(config["downstream_task"] or config["downstream_tasks"] or config["recbole_baselines"])
    if not pipeline:  # RecBole's protocol: RecBole's listing is the truth
        return str(config)
    your = [_line(key, value, None, {}) for key, value in user.items()]
    run_keys = RUN_KEYS + (COMPARISON_KEYS if config["pretrain_methods"] else ())
    sections = [_section("Your settings:", your or ["(none: every value below is a default)"]),
                _section("Run:", _plain_lines(config, run_keys, user))]
    if ours:
        sections.append(_user_model_section(config, user))
        if methods is None:
            sections += [_stage_section(config, str(stage), user) for stage in config["pretrain_stages"] or []]
        else:
            sections += [_stage_section(method_config, stage, user, f"Pre-training method {name}, stage {stage}:")
                         for name, (method_config, stages) in methods.items() for stage in stages]
    else:
        sections.append(_recbole_model_section(config, user))
    keys = FINETUNE_KEYS + (FINETUNE_MODEL_KEYS if ours else ())
    fine = _view_lines(config, StageSettings(config, FINETUNE), FINETUNE, keys, user, overrides_only=True)
    sections.append(_section("Fine-tuning (every downstream run):", fine))
    sections += _kind_sections(config, task_data, tasks, user)
    return "\n" + "\n\n".join(s for s in sections if s) + "\n"

"""Typed checks of settings, in one table: what each setting's value must be (:data:`CONSTRAINTS`), and which
settings each part of a run reads (the groups below), checked before anything runs, each failure a
:class:`~recbole_adaptssr.setting_errors.SettingError` (a ``ValueError``) ``<key> must be <what it must be>, got
<value>``.

A prefixed key (``finetune_learning_rate``, ``mlm_epochs``, ``baseline_max_steps``) is checked against its key's
constraint (:func:`constraint`), unset (``None``) allowed: the general key applies then. Checks that relate several
settings or read files stay with what they check (:mod:`recbole_adaptssr.experiment.validation`: the data set on
disk, ``task_split``'s sum, ``hidden_size`` and ``n_heads``, checkpoints; each plug-in's own ``check_settings``;
the executor's settings, :mod:`recbole_adaptssr.execution.settings`). The allowed values of a setting are
documented beside its default in ``properties/*.yaml``; this table holds no defaults.

Imports neither torch nor RecBole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Integral, Real

from recbole_adaptssr.setting_errors import SettingError


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Constraint:
    """``expected``: what the value must be, in words (``an integer >= 1``); ``test(value)``: whether it is;
    ``why``: said after it (``(epochs without improvement before stopping)``); ``optional``: ``None`` (unset)
    passes."""

    expected: str
    test: object
    why: str = ""
    optional: bool = False

    def problem(self, key: str, value) -> str | None:
        if value is None and self.optional:
            return None
        if self.test(value):
            return None
        return f"{key} must be {self.expected}{self.why}, got {value!r}"


def integer(low: int | None = None, why: str = "", optional: bool = False) -> Constraint:
    """An integer (>= ``low``)."""
    return Constraint("an integer" + (f" >= {low}" if low is not None else ""),
                      lambda v: _is_int(v) and (low is None or v >= low), why and f" {why}", optional)


def number(low: float, strict: bool, why: str = "", optional: bool = False) -> Constraint:
    """A finite number > ``low`` (``strict``) or >= ``low``."""
    return Constraint(f"a number {'>' if strict else '>='} {low:g}",
                      lambda v: _is_number(v) and (v > low if strict else v >= low), why and f" {why}", optional)


def interval(text: str, test, why: str = "", optional: bool = False) -> Constraint:
    """A number in an interval written ``text`` (``(0, 1)``) that ``test`` checks."""
    return Constraint(f"a number in {text}", lambda v: _is_number(v) and test(v), why and f" {why}", optional)


def probability(optional: bool = True) -> Constraint:
    return Constraint("a probability in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1, optional=optional)


def flag(optional: bool = True) -> Constraint:
    return Constraint("True or False", lambda v: isinstance(v, bool), optional=optional)


def one_of(choices, optional: bool = False) -> Constraint:
    return Constraint(f"one of {list(choices)}", lambda v: v in choices, optional=optional)


#: what an exact duplicate row of the data becomes (:mod:`recbole_adaptssr.data.validation`)
DUPLICATE_ROWS = ("report", "drop", "error")
PATIENCE = "(epochs without improvement before stopping)"
BUDGET = "(the pre-training budget of all stages together)"
CONSTRAINTS = {
    # every run
    "seed": integer(),
    "MAX_ITEM_LIST_LENGTH": integer(1, "(the most recent behaviours kept per user)"),
    "train_batch_size": integer(1),
    "eval_batch_size": integer(1),
    "epochs": integer(0),
    "stopping_step": integer(1, PATIENCE),
    "learning_rate": number(0, strict=True),
    "weight_decay": number(0, strict=False, optional=True),
    "report_split": one_of(("test", "valid")),
    "torch_threads": integer(0, "(0: torch's default, one per core)", optional=True),
    "allow_data_change": flag(),
    "min_vocabulary_overlap": interval("[0, 1]", lambda v: 0 <= v <= 1, "(a share of the behaviours)", optional=True),
    "duplicate_rows": one_of(DUPLICATE_ROWS),
    "sequence_cache": flag(),
    "full_sort_fast_batches": flag(),
    # stopping (recbole_adaptssr.stopping), of every run kind and stage
    "stopping_steps": integer(0, optional=True),
    "max_steps": integer(0, optional=True),
    "max_seconds": number(0, strict=True, optional=True),
    "min_epochs": integer(0, optional=True),
    "pretrain_budget_steps": integer(1, BUDGET, optional=True),
    "pretrain_budget_seconds": number(0, strict=True, why=BUDGET, optional=True),
    # our user model
    "hidden_size": integer(1, optional=True),
    "n_layers": integer(1, optional=True),
    "n_heads": integer(1, optional=True),
    "inner_size": integer(1, optional=True),
    "head_hidden_size": integer(1, optional=True),
    "hidden_dropout_prob": probability(),
    "attn_dropout_prob": probability(),
    "head_dropout_prob": probability(),
    # pre-training speed switches (recbole_adaptssr.acceleration), also per stage
    "device_batches": flag(),
    "cuda_graphs": flag(),
    "fused_optimizer": flag(),
    "pretrain_tf32": flag(),
    # pre-training, fine-tuning, the comparison
    "pretrain_valid_ratio": interval("(0, 1)", lambda v: 0 < v < 1),
    "repeat": integer(1),
    "finetune_epochs": integer(1),
    "similarity_users": integer(0, "(0: no Fig. 5 numbers)"),
    "pretrain_repeat": flag(optional=False),
    "significance_wilcoxon": flag(optional=False),
    "plots": flag(optional=False),
}

#: settings every run reads (:func:`recbole_adaptssr.experiment.validation.check_settings`)
RUN = ("seed", "MAX_ITEM_LIST_LENGTH", "train_batch_size", "eval_batch_size", "epochs", "stopping_step",
       "learning_rate", "weight_decay", "report_split", "duplicate_rows", "allow_data_change",
       "min_vocabulary_overlap", "torch_threads", "sequence_cache", "full_sort_fast_batches", "pretrain_budget_steps",
       "pretrain_budget_seconds")
#: the stopping settings of a run (each prefix of :data:`recbole_adaptssr.stopping.RUN_PREFIXES`) or stage
STOPPING = ("stopping_steps", "max_steps", "max_seconds")
#: our user model's sizes and dropouts (models with pretext tasks)
USER_MODEL = ("hidden_size", "n_layers", "n_heads", "inner_size", "head_hidden_size", "hidden_dropout_prob",
              "attn_dropout_prob", "head_dropout_prob")
#: pre-training speed switches, each also ``<stage>_<key>``
ACCELERATION = ("device_batches", "cuda_graphs", "fused_optimizer", "pretrain_tf32")
#: what each pre-training stage reads, as ``<stage>_<key>`` or ``<key>``
STAGE = ("epochs", "learning_rate", "stopping_step", "weight_decay", "min_epochs", "hidden_dropout_prob",
         "attn_dropout_prob")
#: fine-tuning: the repeats, its epoch cap and ``finetune_<key>`` of these keys
FINETUNE = ("repeat", "finetune_epochs", "finetune_learning_rate", "finetune_stopping_step",
            "finetune_train_batch_size", "finetune_eval_batch_size", "finetune_weight_decay")
#: the comparison of pre-training methods
COMPARISON = ("similarity_users", "pretrain_repeat", "significance_wilcoxon", "plots")


def constraint(key: str) -> Constraint:
    """The constraint of ``key``: its own, else, for a prefixed key (``finetune_learning_rate``, ``ssr_cuda_graphs``),
    its key's with unset allowed (the general key applies then)."""
    if key in CONSTRAINTS:
        return CONSTRAINTS[key]
    for i, char in enumerate(key):
        if char == "_" and key[i + 1:] in CONSTRAINTS:
            return replace(CONSTRAINTS[key[i + 1:]], optional=True)
    raise KeyError(f"no constraint for setting {key!r}")


def check(get, keys, name=lambda key: key) -> None:
    """Check each of ``keys`` (``get(key)``: its value, None when unset; ``name(key)``: the setting that holds it,
    which the message names: ``ssr_epochs`` for a stage's ``epochs``); the first problem is a
    :class:`~recbole_adaptssr.setting_errors.SettingError`."""
    for key in keys:
        shown = name(key)
        problem = constraint(shown).problem(shown, get(key))
        if problem:
            raise SettingError(problem)

"""When a training run stops, and the record of how it stopped.

Every run that validates after each epoch (a pre-training stage, a fine-tune run, a RecBole baseline run) keeps its
best epoch and stops after the first epoch at which one of these holds, checked in this order:

* ``patience``: the validation signal has not improved (strictly) for at least ``stopping_step`` epochs **and** at
  least ``stopping_steps`` optimizer steps since the best epoch, and at least ``min_epochs`` epochs have run (and
  the pretext task allows it, :meth:`PretextTask.may_stop`). The more patient of the two counts decides: on a small
  data set, where an epoch is a few steps, ``stopping_steps``; on a large one, ``stopping_step``;
* ``step_cap``: ``max_steps`` optimizer steps have run (the epoch in progress ends at that step and is validated);
* ``time_cap``: ``max_seconds`` of wall time have passed since the run began (training and validation; the epoch
  in progress ends at the next step, and is validated);
* ``epoch_cap``: ``epochs`` epochs have run: the safety net, far above where runs stop by patience.

:class:`StopRecord` is what a run reports: ``stopped_by``, ``epochs_run``, ``steps_run``, ``best_epoch``,
``seconds`` and ``still_improving``: True when it stopped on a cap with its best epoch among its last
``stopping_step`` epochs (patience would not have ended it yet). Tables mark such runs with a dagger.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields

from recbole_adaptssr import setting_checks

STOPPED_BY = ("patience", "epoch_cap", "step_cap", "time_cap")
#: the settings of a rule (each also <stage>_<key>, finetune_<key>, baseline_<key>)
RULE_KEYS = ("epochs", "stopping_step", "stopping_steps", "max_steps", "max_seconds", "min_epochs")
#: the mark of a table cell with a run that stopped on a cap while still improving, and its footnote
DAGGER = "†"


@dataclass(frozen=True)
class StoppingRule:
    """The stopping settings of one run (see the module docstring)."""

    epochs: int
    stopping_step: int
    stopping_steps: int = 0
    max_steps: int | None = None
    max_seconds: float | None = None
    min_epochs: int = 0
    patience: bool = True  # False: only the caps end the run (a fixed budget)

    @classmethod
    def from_settings(cls, settings, **replace) -> "StoppingRule":
        """The rule from ``settings`` (a Config, or a :class:`StageSettings` view): ``epochs``, ``stopping_step``,
        ``stopping_steps``, ``max_steps``, ``max_seconds``, ``min_epochs``; ``replace`` overrides fields."""
        def get(key, default=None):
            try:
                value = settings[key]
            except KeyError:
                return default
            return default if value is None else value

        values = dict(epochs=int(get("epochs", 0)), stopping_step=int(get("stopping_step", 1)),
                      stopping_steps=int(get("stopping_steps", 0)), max_steps=get("max_steps"),
                      max_seconds=get("max_seconds"), min_epochs=int(get("min_epochs", 0)))
        values.update(replace)
        return cls(**values)

    def describe(self) -> str:
        """``patience 10 epochs and 500 steps; caps: 200 epochs, 10000 steps``."""
        if self.patience:
            stop = f"patience {self.stopping_step} epoch(s)" + (
                f" and {self.stopping_steps} steps" if self.stopping_steps else "")
            if self.min_epochs:
                stop += f", not before epoch {self.min_epochs}"
        else:
            stop = "no patience (a fixed budget)"
        caps = [f"{self.epochs} epochs"]
        if self.max_steps is not None:
            caps.append(f"{self.max_steps} steps")
        if self.max_seconds is not None:
            caps.append(f"{self.max_seconds:g} s")
        return f"{stop}; caps: {', '.join(caps)}"


@dataclass
class StopRecord:
    """How a run stopped. Defaults describe a record written before these fields existed (``stopped_by`` empty)."""

    stopped_by: str = ""
    epochs_run: int = -1
    steps_run: int = -1
    best_epoch: int = -1
    still_improving: bool = False
    seconds: float | None = None

    @classmethod
    def from_dict(cls, values: dict | None) -> "StopRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})

    def as_dict(self) -> dict:
        return asdict(self)

    def capped_while_improving(self) -> bool:
        return bool(self.still_improving) and self.stopped_by != "patience"


def still_improving(stopped_by: str, epochs_run: int, best_epoch: int, stopping_step: int) -> bool:
    """A run that stopped on a cap with its best epoch among its last ``stopping_step`` epochs."""
    return stopped_by != "patience" and epochs_run > 0 and best_epoch >= epochs_run - stopping_step


class EarlyStopping:
    """The state of a :class:`StoppingRule` while its run trains.

    The trainer draws an epoch's batches through :meth:`limit` (one optimizer step each, up to the step and time
    caps), then calls :meth:`end_epoch` with the epoch's validation score; :attr:`stopped_by` is set once a rule
    ends the run.
    :meth:`state_dict` / :meth:`load_state_dict` carry the state across a resumption (the wall time run so far
    included)."""

    def __init__(self, rule: StoppingRule, bigger: bool, check_time_per_step: bool = True):
        self.rule, self.bigger, self.check_time_per_step = rule, bool(bigger), check_time_per_step
        self.best_score, self.best_epoch, self.best_steps = None, -1, 0
        self.epochs_run, self.steps_run, self.stopped_by = 0, 0, None
        self._seconds_before, self._started = 0.0, time.perf_counter()

    @property
    def seconds(self) -> float:
        return self._seconds_before + time.perf_counter() - self._started

    # ------------------------------------------------------------------ steps
    def allows_step(self) -> bool:
        """Whether the next optimizer step is within the step and (single-process) time caps."""
        rule = self.rule
        if rule.max_steps is not None and self.steps_run >= rule.max_steps:
            return False
        return not (self.check_time_per_step and rule.max_seconds is not None and self.seconds >= rule.max_seconds)

    def count_step(self) -> None:
        self.steps_run += 1

    def limit(self, batches):
        """``batches`` up to the caps, each one handed out counted as an optimizer step."""
        for batch in batches:
            if not self.allows_step():
                return
            self.count_step()
            yield batch

    # ------------------------------------------------------------------ epochs
    def is_better(self, score) -> bool:
        if score is None or (isinstance(score, float) and math.isnan(score)):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.bigger else score < self.best_score

    def end_epoch(self, epoch: int, score, may_stop: bool = True) -> bool:
        """Record epoch ``epoch`` (0-based) and its validation ``score``; return whether it is the new best. Sets
        :attr:`stopped_by` when a rule ends the run after this epoch."""
        self.epochs_run = epoch + 1
        improved = self.is_better(score)
        if improved:
            self.best_score, self.best_epoch, self.best_steps = score, epoch, self.steps_run
        self.stopped_by = self._reason(improved, may_stop)
        return improved

    def patience_exhausted(self) -> bool:
        rule = self.rule
        return (self.epochs_run - 1 - self.best_epoch >= rule.stopping_step
                and self.steps_run - self.best_steps >= rule.stopping_steps and self.epochs_run >= rule.min_epochs)

    def _reason(self, improved: bool, may_stop: bool) -> str | None:
        rule = self.rule
        if rule.patience and not improved and may_stop and self.patience_exhausted():
            return "patience"
        if rule.max_steps is not None and self.steps_run >= rule.max_steps:
            return "step_cap"
        if rule.max_seconds is not None and self.seconds >= rule.max_seconds:
            return "time_cap"
        if self.epochs_run >= rule.epochs:
            return "epoch_cap"
        return None

    def record(self) -> StopRecord:
        """The run's :class:`StopRecord` (a run that trained no epoch stopped on its epoch cap)."""
        stopped_by = self.stopped_by or "epoch_cap"
        return StopRecord(stopped_by=stopped_by, epochs_run=self.epochs_run, steps_run=self.steps_run,
                          best_epoch=self.best_epoch, seconds=round(self.seconds, 3),
                          still_improving=still_improving(stopped_by, self.epochs_run, self.best_epoch,
                                                          self.rule.stopping_step))

    # ------------------------------------------------------------------ resumption
    def state_dict(self) -> dict:
        return {"best_score": None if self.best_score is None else float(self.best_score),
                "best_epoch": self.best_epoch, "best_steps": self.best_steps, "epochs_run": self.epochs_run,
                "steps_run": self.steps_run, "stopped_by": self.stopped_by, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_steps, self.epochs_run = state["best_steps"], state["epochs_run"]
        self.steps_run, self.stopped_by = state["steps_run"], state["stopped_by"]
        self._seconds_before, self._started = float(state["seconds"]), time.perf_counter()


def cap_warning(what: str, record: StopRecord, rule: StoppingRule, cap_keys: dict) -> str | None:
    """The log's warning for a run that stopped on a cap while still improving (None otherwise); ``cap_keys``
    names the setting of each cap (``{"epoch_cap": "finetune_epochs", ...}``)."""
    if not record.capped_while_improving():
        return None
    key = cap_keys.get(record.stopped_by, record.stopped_by)
    return (f"{DAGGER} {what} stopped on its {record.stopped_by.replace('_', ' ')} ({record.epochs_run} epochs, "
            f"{record.steps_run} steps) while still improving: its best epoch {record.best_epoch} is among its last "
            f"{rule.stopping_step}. Its result is not converged; raise {key}.")


#: where a run's stopping settings live besides the pre-training stages (<stage>_<key>)
RUN_PREFIXES = ("", "finetune_", "baseline_", "baseline_pretrain_")


def check_stopping_settings(get, name=lambda key: key) -> None:
    """Raise ``ValueError`` naming the key for a bad ``stopping_steps`` (an integer >= 0), ``max_steps`` (an integer
    >= 0) or ``max_seconds`` (a number > 0); ``get(key)`` gives a setting's value (None when unset) and ``name(key)``
    the key to report (``ssr_max_steps``, ...). The constraints are :mod:`recbole_adaptssr.setting_checks`'."""
    setting_checks.check(get, setting_checks.STOPPING, name)


def check_run_settings(config) -> None:
    """The stopping settings of fine-tuning and RecBole baselines (every prefix of :data:`RUN_PREFIXES`) and the
    pre-training budget (``pretrain_budget_steps`` an integer >= 1, ``pretrain_budget_seconds`` a number > 0)."""
    for prefix in RUN_PREFIXES:
        check_stopping_settings(lambda key: config[prefix + key], lambda key: prefix + key)
    setting_checks.check(lambda key: config[key], ("pretrain_budget_steps", "pretrain_budget_seconds"))

"""One training run, whatever the model and whichever command asks for it: build the model, fit it (the validation
loader picks the best epoch), test that epoch and record it as a :class:`~recbole_adaptssr.experiment.results.
RunResult`. AdaptSSR's fine-tuning (:func:`~recbole_adaptssr.experiment.finetuning.finetune`, run by the pipeline,
the comparison and the tuning's trials) and RecBole's models as baselines (:mod:`~recbole_adaptssr.experiment.
recbole_baselines`: their task runs, and :func:`fit` for their behaviour pre-training) build their data, then call
these."""

from __future__ import annotations

import os
from logging import getLogger

from recbole.utils import init_seed, set_color

from recbole_adaptssr import distributed
from recbole_adaptssr.experiment.results import RunResult
from recbole_adaptssr.stopping import StoppingRule, StopRecord, cap_warning, still_improving
from recbole_adaptssr.utils import get_model


def fit(cfg, train_data, valid_data, *, seed: int, checkpoint: str, trainer_class, weights=None,
        epoch_callback=None) -> tuple:
    """Build ``cfg["model"]`` (seeded with ``seed``), give it ``weights(net)`` if any, and fit it with
    ``trainer_class``, writing its best epoch to ``checkpoint``; returns ``(trainer, best validation result)``.
    ``epoch_callback(epoch, valid_score)`` is RecBole's ``callback_fn``."""
    init_seed(seed, cfg["reproducibility"])
    net = get_model(cfg["model"])(cfg, train_data._dataset).to(cfg["device"])
    if weights is not None:
        weights(net)
    trainer = trainer_class(cfg, net)  # every rank: rank 0's weights
    distributed.seed_rank(seed)
    trainer.saved_model_file = checkpoint
    _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=cfg["show_progress"],
                                callback_fn=epoch_callback)
    return trainer, best_valid


def train_and_test(cfg, loaders: tuple, *, task: str, kind, label: str, seed: int, checkpoint: str, trainer_class,
                   role: str, weights=None, settings=None, epoch_callback=None) -> RunResult:
    """:func:`fit` on ``loaders`` (train, valid, test), then test the best epoch: the run's :class:`RunResult`
    (``label``: its row in a table; ``settings(trainer)``: what it records besides its metrics). ``role`` is the
    prefix of its settings (``finetune``, ``baseline``), named by the warning of a run that stopped on a cap while
    still improving."""
    train_data, valid_data, test_data = loaders
    trainer, best_valid = fit(cfg, train_data, valid_data, seed=seed, checkpoint=checkpoint,
                              trainer_class=trainer_class, weights=weights, epoch_callback=epoch_callback)
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=cfg["show_progress"])
    stop = run_stop_record(trainer)
    result = RunResult(
        model=cfg["model"], dataset=cfg["dataset"], task=task, kind=kind.name, start_point=label, seed=seed,
        valid={k: float(v) for k, v in (best_valid or {}).items()}, test={k: float(v) for k, v in test.items()},
        best_epoch=int(getattr(trainer, "best_epoch", -1)), valid_metric=str(cfg["valid_metric"]).lower(),
        run_dir=os.path.dirname(checkpoint), checkpoint=checkpoint, settings=settings(trainer) if settings else {},
        stopped_by=stop.stopped_by, epochs_run=stop.epochs_run, steps_run=stop.steps_run,
        still_improving=stop.still_improving)
    getLogger().info(set_color(f"{task} [{label}] seed {seed}", "yellow")
                     + f": best epoch {result.best_epoch} (stopped by {stop.stopped_by} after {stop.epochs_run} "
                       f"epochs), valid {result.valid}, test {result.test}")
    warn_if_capped(f"{task} [{label}] seed {seed}", stop, cfg, role)
    return result


def run_stop_record(trainer) -> StopRecord:
    """How a run stopped: the trainer's record (:meth:`TaskTrainer.fit`), or, for a RecBole trainer with a training
    loop of its own, what its epochs tell (steps unknown: -1)."""
    if getattr(trainer, "stop_record", None) is not None:
        return trainer.stop_record
    epochs_run = len(getattr(trainer, "train_loss_dict", {}) or {})
    stopped_by = "epoch_cap" if epochs_run >= int(trainer.epochs) else "patience"
    best = int(getattr(trainer, "best_epoch", -1))
    return StopRecord(stopped_by=stopped_by, epochs_run=epochs_run, steps_run=-1, best_epoch=best,
                      still_improving=still_improving(stopped_by, epochs_run, best, int(trainer.stopping_step)))


def warn_if_capped(what: str, stop: StopRecord, cfg, prefix: str) -> None:
    """The log's warning (with the settings to raise, ``<prefix>_epochs`` ...) for a run that stopped on a cap while
    still improving."""
    warning = cap_warning(what, stop, StoppingRule.from_settings(cfg),
                          {cap: f"{prefix}_{key}" for cap, key in
                           (("epoch_cap", "epochs"), ("step_cap", "max_steps"), ("time_cap", "max_seconds"))})
    if warning:
        getLogger().warning(warning)

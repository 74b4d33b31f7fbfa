"""``pretrain(config) -> {stage: StageResult}``: the pretext tasks of ``pretrain_stages``, in order, on one model,
each stopping by its own rule (:mod:`recbole_adaptssr.stopping`) or sharing a fixed budget of steps or seconds
(``pretrain_budget_steps`` / ``pretrain_budget_seconds``); resumable after any completed epoch (``resume=True``,
see :func:`pretrain`)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from logging import getLogger

from recbole.data.dataloader import TrainDataLoader
from recbole.utils import init_seed

from recbole_adaptssr import distributed
from recbole_adaptssr.checkpoint import CheckpointError, load_checkpoint, verify_checkpoint
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.pretext.base import StageSettings
from recbole_adaptssr.reproducibility import pin_threads
from recbole_adaptssr.stopping import StoppingRule, StopRecord, cap_warning
from recbole_adaptssr.trainer import RESUME_KIND
from recbole_adaptssr.utils import get_model, get_trainer

#: an epoch cap no budgeted stage reaches: its budget of steps or seconds ends it
UNCAPPED_EPOCHS = 10**9


@dataclass
class StageResult:
    """One pre-training stage: its kept checkpoint, best epoch, validation statistics and how it stopped
    (:class:`~recbole_adaptssr.stopping.StopRecord`'s fields; their defaults read a stage recorded without them)."""

    stage: str
    checkpoint: str
    best_epoch: int
    valid_metric: str
    valid: dict
    initial: dict
    history: list = field(default_factory=list)
    stopped_by: str = ""
    epochs_run: int = -1
    steps_run: int = -1
    still_improving: bool = False
    seconds: float | None = None
    stopping_rule: str = ""

    @classmethod
    def from_summary(cls, stage: str, checkpoint: str, best_epoch: int, valid: dict, summary: dict) -> "StageResult":
        stop = StopRecord.from_dict(summary.get("stopping"))
        return cls(stage=stage, checkpoint=checkpoint, best_epoch=best_epoch, valid_metric=summary["valid_metric"],
                   valid=valid, initial=summary["initial_valid_result"], history=summary["history"],
                   stopped_by=stop.stopped_by, epochs_run=stop.epochs_run, steps_run=stop.steps_run,
                   still_improving=stop.still_improving, seconds=stop.seconds,
                   stopping_rule=str(summary.get("stopping_rule", "")))

    def stop_record(self) -> StopRecord:
        return StopRecord(stopped_by=self.stopped_by, epochs_run=self.epochs_run, steps_run=self.steps_run,
                          best_epoch=self.best_epoch, still_improving=self.still_improving, seconds=self.seconds)


def stage_rule(config, stage: str, index: int, n_stages: int, used_steps: int = 0, used_seconds: float = 0.0):
    """The :class:`StoppingRule` of the ``index``-th of ``n_stages`` stages: its own settings; under a pre-training
    budget (``pretrain_budget_steps`` / ``pretrain_budget_seconds``, of all stages together) each stage is capped
    by what the earlier ones left (``used_steps``, ``used_seconds``), and the last stage trains until it is spent
    (no patience, no epoch cap)."""
    rule = StoppingRule.from_settings(StageSettings(config, stage))
    steps, seconds = config["pretrain_budget_steps"], config["pretrain_budget_seconds"]
    if steps is None and seconds is None:
        return rule
    changes = {}
    if steps is not None:
        left = max(int(steps) - used_steps, 0)
        changes["max_steps"] = left if rule.max_steps is None else min(rule.max_steps, left)
    if seconds is not None:
        left = max(float(seconds) - used_seconds, 0.0)
        changes["max_seconds"] = left if rule.max_seconds is None else min(rule.max_seconds, left)
    if index == n_stages - 1:
        changes.update(patience=False, epochs=UNCAPPED_EPOCHS)
    return dataclasses.replace(rule, **changes)


@dataclass
class EarlierStages:
    """Where a pre-training continues that another run began (a plan's unit of the stages before): the results of
    its finished stages, in order, and the resume checkpoint of the last one's end (model, RNG states)."""

    results: dict
    end_state: str


def pretrain(config, run_dir: str | None = None, epoch_callback=None, resume: bool = False,
             earlier: EarlierStages | None = None, keep_end_state: bool = False,
             stage_count: int | None = None) -> dict:
    """Pre-train ``config["model"]`` with every stage of ``pretrain_stages`` in order (one model, one split of
    the user sequences); write each stage's best epoch to ``<run_dir>/pretrain/<stage>.pth`` (default run_dir:
    ``checkpoint_dir``) and return ``{stage: StageResult}``. ``epoch_callback(stage, epoch, valid_result)`` is
    called after every epoch's validation (and its resume checkpoint).

    While a stage trains, ``<run_dir>/pretrain/<stage>.last.pth`` holds everything needed to continue after its
    last completed epoch (see :meth:`AdaptSSRTrainer.train_stage`); when every stage is done they are removed
    (``keep_end_state``: the last stage's is kept, where the next stage of a longer chain starts), and the stage
    checkpoints are the record. ``resume=True`` continues an interrupted pre-training in ``run_dir``: finished
    stages are read back, the latest stage with a resume checkpoint continues after its last epoch (or, if it had
    finished, the next stage starts with the RNG states it would have found), and the results equal an
    uninterrupted run's (same settings, same device).

    ``earlier``: the first stages of ``pretrain_stages`` were trained by another run (:class:`EarlierStages`): this
    one starts where they ended, as the stage after them would have started in one run, and trains the others.
    ``stage_count``: the number of stages of the whole chain (default: ``pretrain_stages``'s), which a pre-training
    budget divides."""
    stages = [str(s) for s in config["pretrain_stages"] or []]
    if not stages:
        return {}
    logger = getLogger()
    first = len(earlier.results) if earlier is not None else 0
    if earlier is not None and list(earlier.results) != stages[:first]:
        raise ValueError(f"the earlier stages {list(earlier.results)} are not the first of {stages}")
    if config["train_stage"] != stages[first] or config["downstream_task"]:
        # pre-training reads the behaviour log, whatever downstream task the run is about
        config = config.derive(train_stage=stages[first], downstream_task=None)
    folder = os.path.join(run_dir or config["checkpoint_dir"], "pretrain")
    if distributed.is_main_process():
        os.makedirs(folder, exist_ok=True)
    distributed.barrier()
    final = {stage: os.path.join(folder, f"{stage}.pth") for stage in stages[first:]}
    last = {stage: resume_checkpoint_path(folder, stage) for stage in stages[first:]}

    start, saved = first, None
    if earlier is not None:  # the end of the earlier stages, as a finished resume checkpoint of the last of them
        start, saved = first - 1, load_resume_checkpoint(earlier.end_state, stages[first - 1], first - 1)
    if resume:
        latest = max((i for i in range(first, len(stages)) if os.path.exists(last[stages[i]])), default=None)
        if latest is not None:
            start, saved = latest, load_resume_checkpoint(last[stages[latest]], stages[latest], latest)
        elif all(os.path.isfile(final[stage]) for stage in stages[first:]):
            logger.info(f"pre-training of {folder} had finished: reading its {len(final)} stage checkpoint(s)")
            return {**(earlier.results if earlier else {}), **{s: stage_result(final[s], s) for s in final}}

    pin_threads(config)
    data = create_dataset(config)
    logger.info(str(data))  # now: the data set changes when it is split
    train_set, valid_set = data.build()
    logger.info(f"pre-training split: {len(train_set)} train / {len(valid_set)} valid sequences")
    # under torch.distributed each rank trains on its shard (B / N sequences a step) and validates whole batches
    train_data = TrainDataLoader(config, train_set, None, shuffle=config["shuffle"])
    with distributed.single_process_view(config):
        valid_data = TrainDataLoader(config, valid_set, None, shuffle=False)
    init_seed(config["seed"], config["reproducibility"])
    net = get_model(config["model"])(config, train_set).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)  # every rank: rank 0's weights
    distributed.seed_rank(config["seed"])
    results = dict(earlier.results) if earlier is not None else {}
    results.update({stage: stage_result(final[stage], stage) for stage in stages[first:start]})
    for index in range(start, len(stages)):
        stage = stages[index]
        if saved is not None and saved["finished"]:
            logger.info(f"[{stage}] had finished: the next stage starts where it ended")
            trainer.restore_stage_end(saved, train_data, valid_data, new_stages=stages[first:])
            results.setdefault(stage, None)
            results[stage], saved = results[stage] or stage_result(final[stage], stage), None
            continue
        used = [r.stop_record() for r in results.values()]
        rule = stage_rule(config, stage, index, stage_count or len(stages), sum(max(r.steps_run, 0) for r in used),
                          sum(r.seconds or 0.0 for r in used))
        summary = trainer.train_stage(stage, train_data, valid_data, data.item_vocabulary(), final[stage],
                                      show_progress=config["show_progress"], epoch_callback=epoch_callback,
                                      resume_path=last[stage], resume_state=saved, stage_index=index, rule=rule)
        saved = None
        results[stage] = StageResult.from_summary(stage, summary["checkpoint"], summary["best_epoch"],
                                                  summary["best_valid_result"], summary)
        warning = cap_warning(f"pre-training stage {stage}", results[stage].stop_record(), rule,
                              {"epoch_cap": f"{stage}_epochs", "step_cap": f"{stage}_max_steps or the budget",
                               "time_cap": f"{stage}_max_seconds or the budget"})
        if warning:
            logger.warning(warning)
    if distributed.is_main_process():
        kept = stages[-1] if keep_end_state else None
        for stage in stages[first:]:  # in stage order: an interruption here leaves the last stage's (finished) file
            if stage != kept and os.path.exists(last[stage]):
                os.remove(last[stage])
    distributed.barrier()
    return results


def resume_checkpoint_path(folder: str, stage: str) -> str:
    """``<folder>/<stage>.last.pth``: the stage's per-epoch resume checkpoint."""
    return os.path.join(folder, f"{stage}.last.pth")


def load_resume_checkpoint(path: str, stage: str, index: int) -> dict:
    """A verified resume checkpoint of ``stage`` (the ``index``-th stage); errors name the file."""
    state = verify_checkpoint(path, require_checksum=True)
    if state.get("kind") != RESUME_KIND or state.get("stage") != stage or state.get("stage_index") != index:
        raise CheckpointError(path, f"is not the resume checkpoint of stage {stage!r} (stage {index + 1}) of these "
                                    f"settings: it holds kind={state.get('kind')!r}, stage={state.get('stage')!r}, "
                                    f"stage_index={state.get('stage_index')!r}")
    return state


def stage_result(path: str, stage: str) -> StageResult:
    """The :class:`StageResult` of a finished stage, read back from its (verified) checkpoint."""
    state = load_checkpoint(path)
    summary = state.get("summary") or {}
    if state.get("stage") != stage or "history" not in summary:
        raise CheckpointError(path, f"cannot be read back as the result of stage {stage!r} (stage "
                                    f"{state.get('stage')!r}, summary keys {sorted(summary)}); start a new run")
    return StageResult.from_summary(stage, path, state["epoch"], state["valid_result"], summary)

"""The stopping rule (recbole_adaptssr/stopping.py) on hand-made score sequences, and the records it leaves."""

import pytest

from recbole_adaptssr.stopping import (
    EarlyStopping,
    StoppingRule,
    StopRecord,
    cap_warning,
    check_run_settings,
    check_stopping_settings,
)


def run(rule, scores, steps_per_epoch=10, bigger=False, may_stop=lambda epoch: True):
    """Feed ``scores`` epoch by epoch (each epoch drawing ``steps_per_epoch`` batches through the caps) until the
    rule stops; return the stopper."""
    stopper = EarlyStopping(rule, bigger)
    for epoch, score in enumerate(scores):
        list(stopper.limit(range(steps_per_epoch)))
        stopper.end_epoch(epoch, score, may_stop=may_stop(epoch))
        if stopper.stopped_by:
            break
    return stopper


FALLS_THEN_FLAT = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 3.3, 3.4, 3.6, 3.0, 3.9, 4.0]  # best 3.0 at epoch 2 (not beaten)


def test_patience_in_epochs():
    stopper = run(StoppingRule(epochs=100, stopping_step=3), FALLS_THEN_FLAT)
    record = stopper.record()
    assert (record.stopped_by, record.epochs_run, record.best_epoch, record.steps_run) == ("patience", 6, 2, 60)
    assert record.still_improving is False and not record.capped_while_improving()


def test_a_tie_is_no_improvement():
    stopper = run(StoppingRule(epochs=100, stopping_step=3), [2.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    assert stopper.record().best_epoch == 1 and stopper.record().epochs_run == 5


def test_patience_in_steps_decides_when_epochs_are_short():
    """3 epochs of patience would stop after epoch 5; 45 steps of 10-step epochs need 5 epochs without improvement."""
    stopper = run(StoppingRule(epochs=100, stopping_step=3, stopping_steps=45), FALLS_THEN_FLAT)
    assert (stopper.stopped_by, stopper.epochs_run, stopper.best_epoch) == ("patience", 8, 2)
    # long epochs: 45 steps are reached within one epoch, the 3 epochs decide
    stopper = run(StoppingRule(epochs=100, stopping_step=3, stopping_steps=45), FALLS_THEN_FLAT, steps_per_epoch=100)
    assert (stopper.stopped_by, stopper.epochs_run) == ("patience", 6)


def test_min_epochs_and_a_task_that_refuses_to_stop():
    stopper = run(StoppingRule(epochs=100, stopping_step=3, min_epochs=8), FALLS_THEN_FLAT)
    assert (stopper.stopped_by, stopper.epochs_run) == ("patience", 8)
    stopper = run(StoppingRule(epochs=100, stopping_step=3), FALLS_THEN_FLAT, may_stop=lambda epoch: epoch >= 10)
    assert (stopper.stopped_by, stopper.epochs_run) == ("patience", 11)


def summary(record):
    return record.stopped_by, record.epochs_run, record.best_epoch, record.still_improving


def test_epoch_cap_while_improving_and_after_a_plateau():
    record = run(StoppingRule(epochs=3, stopping_step=3), FALLS_THEN_FLAT).record()
    assert summary(record) == ("epoch_cap", 3, 2, True) and record.capped_while_improving()
    # a cap after the best epoch left the last stopping_step epochs: not still improving
    record = run(StoppingRule(epochs=6, stopping_step=3, stopping_steps=1000), FALLS_THEN_FLAT).record()
    assert summary(record) == ("epoch_cap", 6, 2, False)


def test_one_epoch_is_still_improving():
    assert summary(run(StoppingRule(epochs=1, stopping_step=3), [0.5]).record()) == ("epoch_cap", 1, 0, True)


def test_step_cap_cuts_an_epoch_and_a_budget_without_patience_runs_to_it():
    stopper = run(StoppingRule(epochs=100, stopping_step=3, max_steps=25), FALLS_THEN_FLAT)
    assert (stopper.stopped_by, stopper.epochs_run, stopper.steps_run) == ("step_cap", 3, 25)
    stopper = run(StoppingRule(epochs=100, stopping_step=3, max_steps=95, patience=False), FALLS_THEN_FLAT)
    assert (stopper.stopped_by, stopper.epochs_run, stopper.steps_run, stopper.best_epoch) == ("step_cap", 10, 95, 2)
    assert stopper.record().still_improving is False  # best epoch 2, last 3 epochs 7..9


def test_time_cap(monkeypatch):
    clock = iter(range(0, 1000, 7))  # every look at the clock: 7 s later
    monkeypatch.setattr("recbole_adaptssr.stopping.time.perf_counter", lambda: next(clock))
    stopper = run(StoppingRule(epochs=100, stopping_step=30, max_seconds=100.0), FALLS_THEN_FLAT)
    assert stopper.stopped_by == "time_cap" and stopper.steps_run < 20 and stopper.epochs_run <= 2


def test_bigger_is_better_and_nan_never_improves():
    stopper = run(StoppingRule(epochs=100, stopping_step=2), [0.1, 0.3, float("nan"), 0.2], bigger=True)
    assert (stopper.stopped_by, stopper.best_epoch, stopper.best_score) == ("patience", 1, 0.3)


def continue_from_epoch_4(resumed):
    """Epochs 4, 5, ... of FALLS_THEN_FLAT, 10 steps each, until the rule stops."""
    for epoch, score in enumerate(FALLS_THEN_FLAT[4:], start=4):
        list(resumed.limit(range(10)))
        resumed.end_epoch(epoch, score)
        if resumed.stopped_by:
            break


def test_state_round_trip_continues_identically():
    rule = StoppingRule(epochs=100, stopping_step=3, stopping_steps=45)
    first = EarlyStopping(rule, False)
    for epoch, score in enumerate(FALLS_THEN_FLAT[:4]):
        list(first.limit(range(10)))
        first.end_epoch(epoch, score)
    resumed = EarlyStopping(rule, False)
    resumed.load_state_dict(first.state_dict())
    continue_from_epoch_4(resumed)
    whole = run(rule, FALLS_THEN_FLAT)
    assert (resumed.stopped_by, resumed.epochs_run, resumed.steps_run, resumed.best_epoch) == \
           (whole.stopped_by, whole.epochs_run, whole.steps_run, whole.best_epoch)


def test_record_reads_older_and_partial_dicts():
    assert StopRecord.from_dict(None) == StopRecord()
    assert StopRecord.from_dict({"stopped_by": "patience", "epochs_run": 4, "unknown": 1}).epochs_run == 4


def test_a_resume_checkpoint_without_the_stopping_state_continues_with_the_same_decisions():
    """A resume checkpoint written before step counting (best score and epoch, last epoch, patience only): the state
    is rebuilt counting full epochs, and the run then stops where an uninterrupted one does."""
    from recbole_adaptssr.trainer import resume_stopping_state

    rule = StoppingRule(epochs=100, stopping_step=3, stopping_steps=45)
    old = {"epoch": 3, "best_score": 3.0, "best_epoch": 2, "patience": 1, "stopped": False}
    resumed = EarlyStopping(rule, False)
    resumed.load_state_dict(resume_stopping_state(old, steps_per_epoch=10))
    assert (resumed.epochs_run, resumed.steps_run, resumed.best_steps) == (4, 40, 30)
    continue_from_epoch_4(resumed)
    whole = run(rule, FALLS_THEN_FLAT)
    assert (resumed.stopped_by, resumed.epochs_run, resumed.best_epoch) == (whole.stopped_by, whole.epochs_run,
                                                                            whole.best_epoch)


def test_a_stage_recorded_before_stopping_records_reads_back_with_defaults():
    from recbole_adaptssr.experiment.pretraining import StageResult

    summary = {"valid_metric": "loss", "initial_valid_result": {"loss": 2.0}, "history": [{"epoch": 0, "loss": 1.0}]}
    stage = StageResult.from_summary("mlm", "mlm.pth", 0, {"loss": 1.0}, summary)
    assert (stage.stopped_by, stage.epochs_run, stage.still_improving, stage.stopping_rule) == ("", -1, False, "")
    assert not stage.stop_record().capped_while_improving()


def test_cap_warning_names_the_setting():
    rule = StoppingRule(epochs=1, stopping_step=3)
    record = run(rule, [0.5]).record()
    warning = cap_warning("age [ssr] seed 1", record, rule, {"epoch_cap": "finetune_epochs"})
    assert warning.startswith("† age [ssr] seed 1 stopped on its epoch cap (1 epochs, 10 steps)")
    assert "raise finetune_epochs" in warning
    assert cap_warning("x", run(StoppingRule(epochs=100, stopping_step=3), FALLS_THEN_FLAT).record(), rule, {}) is None


@pytest.mark.parametrize("key,value,message", [
    ("stopping_steps", -1, "ssr_stopping_steps must be an integer >= 0, got -1"),
    ("max_steps", 2.5, "ssr_max_steps must be an integer >= 0, got 2.5"),
    ("max_seconds", 0, "ssr_max_seconds must be a number > 0, got 0"),
])
def test_bad_stopping_settings_name_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        check_stopping_settings({key: value}.get, lambda k: f"ssr_{k}")


def test_bad_run_settings_name_the_key():
    config = {"finetune_stopping_steps": "many"}
    with pytest.raises(ValueError, match="finetune_stopping_steps must be an integer >= 0, got 'many'"):
        check_run_settings(_Settings(config))
    with pytest.raises(ValueError, match="pretrain_budget_steps must be an integer >= 1 .* got 0"):
        check_run_settings(_Settings({"pretrain_budget_steps": 0}))


class _Settings(dict):
    def __getitem__(self, key):
        return self.get(key)

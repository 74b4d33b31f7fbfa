"""scripts/stage_timing.py: the steady state of an epoch leaves out its last, partial batch, also when the epoch has
fewer steps than the warm-up (it reported no steady state there, so the bench scripts printed nan)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def steady(ends, sizes, warmup_steps):
    from stage_timing import StageTimer

    return StageTimer(cuda=False, warmup_steps=warmup_steps)._steady(ends, sizes)


def test_an_epoch_shorter_than_the_warm_up_keeps_its_last_full_interval():
    ends = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.81]  # 8 full batches of 32, then 14 sequences
    out = steady(ends, [32] * 8 + [14], warmup_steps=20)
    assert (out["warmup_steps"], out["steady_steps"]) == (6, 1)
    assert out["steady_ms_per_step"] == pytest.approx(200.0)
    assert out["steady_sequences_per_s"] == pytest.approx(32 / 0.2)


def test_the_steady_state_after_the_warm_up_steps():
    ends = [0.0, 5.0, 5.1, 5.3, 5.4, 5.5, 5.501]  # a slow first step; the last batch is partial
    out = steady(ends, [64] * 6 + [1], warmup_steps=1)
    assert (out["warmup_steps"], out["steady_steps"]) == (1, 4)
    assert out["steady_ms_per_step"] == pytest.approx(100.0)
    assert out["steady_mean_ms_per_step"] == pytest.approx(125.0)
    assert out["steady_sequences_per_s"] == pytest.approx(64 * 4 / 0.5)
    full = steady(ends[:6], [64] * 6, warmup_steps=1)  # no partial batch: every interval after the warm-up counts
    assert full["steady_steps"] == 4 and full["steady_mean_ms_per_step"] == pytest.approx(125.0)

"""The Ray Tune API we use: ``RunConfig``, ``FailureConfig``, ``CheckpointConfig``, ``report(metrics: dict)`` and
``get_context()`` of ``ray.tune`` (Ray >= 2.41, where Tune has its own API), or of ``ray.train`` on Ray 2.40, our
floor (there ``ray.tune.report`` is still the removed keyword form). Nothing here imports Ray at module import."""

from __future__ import annotations

TUNE_API_SINCE = (2, 41)


def _api():
    """``ray.tune``, or ``ray.train`` on Ray 2.40."""
    import ray

    from recbole_adaptssr.compat import _version_tuple

    if _version_tuple(ray.__version__) >= TUNE_API_SINCE:
        from ray import tune

        return tune
    from ray import train

    return train


def run_config_class():
    return _api().RunConfig


def failure_config_class():
    return _api().FailureConfig


def checkpoint_config_class():
    return _api().CheckpointConfig


def report(metrics: dict) -> None:
    """Report a trial's metrics (once per epoch)."""
    _api().report(metrics)


def trial_id() -> str | None:
    """The running trial's id, or None outside a trial."""
    try:
        return _api().get_context().get_trial_id()
    except Exception:  # noqa: BLE001 - outside a trial the context has no trial (Ray raises several kinds)
        return None


def api_summary() -> str:
    """Which Ray and which of its modules the study uses (for the study summary)."""
    import ray

    return f"ray {ray.__version__}: tune.Tuner, tune.TuneConfig, {_api().__name__}.RunConfig, report"

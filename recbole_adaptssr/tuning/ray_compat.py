"""The Ray Tune API we use, feature-detected across the versions it moved in (Ray >= 2.40).

* ``RunConfig`` / ``FailureConfig`` / ``CheckpointConfig``: ``ray.tune`` (2.41+, Tune decoupled from Train), else
  ``ray.train`` (2.7 - 2.40), else ``ray.air`` (2.0 - 2.6).
* ``report(metrics)``: ``ray.tune.report(metrics: dict)`` (2.41+), else ``ray.train.report`` (2.7 - 2.40), else
  ``ray.air.session.report``. Ray 1.x's ``tune.report(**metrics)`` (what RecBole's ``objective_function`` calls)
  is gone: it is never used.
* ``trial_dir()``: ``ray.tune.get_context().get_trial_dir()``, else ``ray.train.get_context()``.

Nothing here imports Ray at module import.
"""

from __future__ import annotations

import inspect


def _first(*candidates):
    """The first attribute found among ``(module path, attribute)`` pairs."""
    import importlib

    for module, name in candidates:
        try:
            value = getattr(importlib.import_module(module), name, None)
        except ImportError:
            value = None
        if value is not None:
            return value
    raise ImportError(f"none of {[f'{m}.{n}' for m, n in candidates]} exists in this Ray")


def run_config_class():
    return _first(("ray.tune", "RunConfig"), ("ray.train", "RunConfig"), ("ray.air", "RunConfig"))


def failure_config_class():
    return _first(("ray.tune", "FailureConfig"), ("ray.train", "FailureConfig"), ("ray.air", "FailureConfig"))


def checkpoint_config_class():
    return _first(("ray.tune", "CheckpointConfig"), ("ray.train", "CheckpointConfig"),
                  ("ray.air", "CheckpointConfig"))


def report_function():
    """The function a trial calls with a metrics dict, once per epoch."""
    from ray import tune

    report = getattr(tune, "report", None)
    if report is not None:
        try:
            params = list(inspect.signature(report).parameters.values())
        except (TypeError, ValueError):
            params = []
        if params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            return report  # report(metrics, *, checkpoint=None)
    return _first(("ray.train", "report"), ("ray.air.session", "report"))


def report(metrics: dict) -> None:
    report_function()(metrics)


def trial_dir() -> str | None:
    """The running trial's own directory, or None outside a trial."""
    for module in ("ray.tune", "ray.train"):
        try:
            context = _first((module, "get_context"))()
            return context.get_trial_dir()
        except Exception:  # noqa: BLE001 - older APIs raise different errors outside a session
            continue
    return None


def ray_version() -> str:
    import ray

    return ray.__version__


def api_summary() -> str:
    """Which classes and report function this Ray provides (for the study summary)."""
    names = []
    for what, get in (("RunConfig", run_config_class), ("FailureConfig", failure_config_class),
                      ("report", report_function)):
        obj = get()
        names.append(f"{obj.__module__}.{getattr(obj, '__qualname__', what)}")
    return f"ray {ray_version()}: tune.Tuner, tune.TuneConfig, " + ", ".join(names)

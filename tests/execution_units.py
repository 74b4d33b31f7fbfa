"""Unit kinds for the tests of recbole_adaptssr.execution: small, real work in plain Python (no torch, so worker
processes start fast), importable by spawned worker processes and Ray tasks.

* ``toy_data`` (settings ``seed``, ``n``): noisy points of y = 3x - 1, written to ``data.json`` in its folder.
* ``toy_fit`` (``seed``, ``steps``, ``lr``; needs ``data``): a line fitted by seeded SGD on the data unit's file.
  ``fail: true`` raises after the fit has started.
* ``toy_mean`` (needs ``a`` and ``b``, two fits): the mean of their slopes.
* ``recbole_finetune`` (``model``, ``dataset``, ``task``, ``seed`` and settings): a real fine-tune run from scratch
  (``experiment.finetune``), its Config built from the unit's settings alone.

Each appends ``start <id>`` and ``end <id>`` lines to ``<run folder>/ledger.txt`` (one ``write`` of a short line to
a file opened for appending: lines of concurrent units never mix), so tests can count runs and check their order.
``EXECUTION_TEST_KILL=<title>`` makes the unit of that title SIGKILL its own process when it starts;
``EXECUTION_TEST_INTERRUPT=<title>`` makes it raise ``KeyboardInterrupt`` (as Ctrl-C would).
"""

from __future__ import annotations

import json
import os
import random
import signal

LEDGER = "ledger.txt"


def _ledger(context, what: str) -> None:
    fd = os.open(os.path.join(context.run_dir, LEDGER), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {context.unit.id}\n".encode())
    finally:
        os.close(fd)


def _begin(context) -> None:
    _ledger(context, "start")
    if os.environ.get("EXECUTION_TEST_KILL") == context.unit.title:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("EXECUTION_TEST_INTERRUPT") == context.unit.title:
        raise KeyboardInterrupt


def make_data(context) -> dict:
    _begin(context)
    rng = random.Random(context.settings["seed"])
    points = [(x, 3 * x - 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(context.settings["n"]))]
    with open(os.path.join(context.folder, "data.json"), "w", encoding="utf-8") as f:
        json.dump(points, f)
    _ledger(context, "end")
    return {"file": "data.json", "n": len(points)}


def check_data(result, folder) -> None:
    """A data unit's result is reusable only while its file is there."""
    if not os.path.isfile(os.path.join(folder, result.payload["file"])):
        raise FileNotFoundError(f"{folder}/{result.payload['file']} is gone")


def fit(context) -> dict:
    _begin(context)
    with open(os.path.join(context.input_folder("data"), context.inputs["data"]["file"]), encoding="utf-8") as f:
        points = json.load(f)
    rng = random.Random(context.settings["seed"])
    w = b = 0.0
    lr = context.settings["lr"]
    for step in range(context.settings["steps"]):
        x, y = points[rng.randrange(len(points))]
        error = w * x + b - y
        w, b = w - lr * error * x, b - lr * error
        if context.settings.get("fail") and step == 10:
            raise ValueError(f"the fit was told to fail (seed {context.settings['seed']})")
    loss = sum((w * x + b - y) ** 2 for x, y in points) / len(points)
    _ledger(context, "end")
    return {"w": w, "b": b, "loss": loss}


def mean_slope(context) -> dict:
    _begin(context)
    _ledger(context, "end")
    return {"w": (context.inputs["a"]["w"] + context.inputs["b"]["w"]) / 2}


def recbole_finetune(context) -> dict:
    from recbole_adaptssr.config import Config
    from recbole_adaptssr.experiment import finetune

    settings = dict(context.settings)
    model, dataset, task, seed = (settings.pop(key) for key in ("model", "dataset", "task", "seed"))
    config = Config(model=model, dataset=dataset, config_dict=settings).derive(**context.overrides())
    result = finetune(config, task, None, seed, run_dir=context.folder)
    return {**result.as_dict(), "checkpoint": os.path.relpath(result.checkpoint, context.folder), "run_dir": "."}


def register() -> None:
    from recbole_adaptssr.execution import register_unit_kind

    register_unit_kind("toy_data", make_data, check=check_data, replace=True)
    register_unit_kind("toy_fit", fit, replace=True)
    register_unit_kind("toy_mean", mean_slope, replace=True)
    register_unit_kind("recbole_finetune", recbole_finetune, replace=True)


def read_ledger(run_dir) -> list:
    """``[(event, unit id)]`` in the order written."""
    path = os.path.join(str(run_dir), LEDGER)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [tuple(line.split()) for line in f if line.strip()]

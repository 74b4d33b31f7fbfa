"""Which executor runs a plan, and with what resources: the settings ``executor``, ``executor_workers``,
``cpus_per_unit``, ``gpus_per_unit`` and ``ray_address`` (defaults in ``properties/overall.yaml``, documented
there and in docs/execution.md), read and checked once into an :class:`ExecutorSettings`.

GPUs: a run uses the GPUs of RecBole's ``gpu_id`` when its device is CUDA, none otherwise. ``gpus_per_unit: ~``
gives each unit one GPU when the run uses GPUs and none otherwise; ``0.25`` lets four units share a GPU, ``2`` gives
a unit two. The ``processes`` executor gives each worker process its GPUs (:func:`worker_devices`) through
``CUDA_VISIBLE_DEVICES`` before it starts; Ray does the same for its tasks from ``num_gpus``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from recbole_adaptssr.setting_errors import SettingError

EXECUTORS = ("serial", "processes", "ray")
KEYS = ("executor", "executor_workers", "cpus_per_unit", "gpus_per_unit", "ray_address")
# the keys each executor reads (the others, when the user sets them, are an error: never silently ignored)
USED = {"serial": ("executor",), "processes": ("executor", "executor_workers", "cpus_per_unit", "gpus_per_unit"),
        "ray": KEYS}


def _number(key: str, value, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (value <= minimum if strict else value < minimum):
        raise SettingError(f"{key} must be a number {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return float(value)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ExecutorSettings:
    """The resolved, checked executor settings (build them with :meth:`from_config` or :meth:`from_settings`)."""

    executor: str
    workers: int | None  # executor_workers (None: as many as the resources allow)
    cpus_per_unit: float
    gpus_per_unit: float  # resolved: never None
    ray_address: str | None
    gpu_ids: tuple = field(default_factory=tuple)  # the GPUs the run may use (RecBole's gpu_id), () = the CPU

    @classmethod
    def from_config(cls, config) -> "ExecutorSettings":
        """From a RecBole ``Config`` (our YAML defaults included); a key the chosen executor does not read but the
        user set is an error."""
        values = {key: config[key] for key in KEYS}
        uses_gpu = str(config["device"] or "cpu").startswith("cuda")
        gpu_ids = [g.strip() for g in str(config["gpu_id"] or "").split(",") if g.strip()] if uses_gpu else []
        user = set(getattr(config, "user_config_dict", {}) or {})
        return cls.build(values, gpu_ids, user)

    @classmethod
    def from_settings(cls, settings: dict | None = None, gpu_ids=()) -> "ExecutorSettings":
        """From a plain mapping (the keys it lacks take the defaults of ``properties/overall.yaml``)."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(KEYS))
        if unknown:
            raise SettingError(f"unknown executor setting(s) {unknown}; known: {list(KEYS)}")
        return cls.build({**default_settings(), **settings}, list(gpu_ids), set(settings))

    @classmethod
    def build(cls, values: dict, gpu_ids: list, user_keys=()) -> "ExecutorSettings":
        """Check ``values`` (every key of :data:`KEYS`), naming the key of a bad value."""
        executor = values["executor"]
        if executor not in EXECUTORS:
            raise SettingError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
        unused = [key for key in KEYS if key in set(user_keys) and key not in USED[executor]]
        if unused:
            raise SettingError(f"{unused} {'has' if len(unused) == 1 else 'have'} no effect with executor: {executor} "
                               f"(it reads {list(USED[executor])}); remove {'it' if len(unused) == 1 else 'them'} or "
                               "choose another executor")
        workers = values["executor_workers"]
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise SettingError(f"executor_workers must be an integer >= 1, or ~ (as many as the resources allow), "
                               f"got {workers!r}")
        cpus = _number("cpus_per_unit", values["cpus_per_unit"], 0, strict=True)
        gpus = values["gpus_per_unit"]
        gpus = (1.0 if gpu_ids else 0.0) if gpus is None else _number("gpus_per_unit", gpus, 0, strict=False)
        if gpus > 1 and gpus != int(gpus):
            raise SettingError(f"gpus_per_unit above 1 must be a whole number of GPUs, got {gpus:g}")
        address = values["ray_address"]
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise SettingError(f"ray_address must be an address (auto, or ray://HEAD:10001), or ~ for a local Ray, "
                               f"got {address!r}")
        settings = cls(executor, workers, cpus, gpus, address, tuple(str(g) for g in gpu_ids))
        if executor == "processes":
            settings.worker_devices()  # not enough GPUs for the workers: an error now
        return settings

    # ----------------------------------------------------------------------------------------------- resources
    def gpu_capacity(self) -> int | None:
        """How many units the GPUs hold at once (None when units take no GPU)."""
        if self.gpus_per_unit == 0:
            return None
        if self.gpus_per_unit <= 1:
            return int(math.floor(1 / self.gpus_per_unit + 1e-9)) * len(self.gpu_ids)
        return len(self.gpu_ids) // int(self.gpus_per_unit)

    def process_count(self) -> int:
        """Worker processes of the ``processes`` executor: ``executor_workers``, else what the GPUs hold, else the
        CPUs available to this process divided by ``cpus_per_unit``."""
        if self.workers is not None:
            return self.workers
        capacity = self.gpu_capacity()
        if capacity is not None:
            return capacity
        return max(1, _available_cpus() // max(1, math.ceil(self.cpus_per_unit)))

    def worker_devices(self) -> list:
        """``CUDA_VISIBLE_DEVICES`` of each worker process (``""``: the CPU): with ``gpus_per_unit`` g <= 1,
        floor(1/g) consecutive workers share a GPU; with g > 1 each worker takes g GPUs of its own."""
        count = self.process_count()
        capacity = self.gpu_capacity()
        if capacity is None:
            return [""] * count
        if capacity < count:
            have = f"gpu_id has {len(self.gpu_ids)} GPU(s) ({','.join(self.gpu_ids)})" if self.gpu_ids else \
                "the run uses no GPU (device cpu, use_gpu False or no CUDA)"
            raise SettingError(f"executor_workers={count} with gpus_per_unit={self.gpus_per_unit:g} needs "
                               f"{math.ceil(count * self.gpus_per_unit)} GPU(s), and {have}; lower executor_workers "
                               "or gpus_per_unit, or set gpus_per_unit: 0 to run on the CPU")
        if self.gpus_per_unit <= 1:
            per_gpu = int(math.floor(1 / self.gpus_per_unit + 1e-9))
            return [self.gpu_ids[i // per_gpu] for i in range(count)]
        k = int(self.gpus_per_unit)
        return [",".join(self.gpu_ids[i * k:(i + 1) * k]) for i in range(count)]

    def describe(self) -> str:
        """One line for the log: the executor and its resources."""
        if self.executor == "serial":
            return "executor serial: one unit at a time, in this process"
        if self.executor == "processes":
            devices = self.worker_devices()
            where = "the CPU" if not any(devices) else "GPUs " + ", ".join(f"worker {i}: {d}" for i, d in
                                                                             enumerate(devices))
            return (f"executor processes: {len(devices)} worker process(es), {self.cpus_per_unit:g} CPU(s) each, "
                    f"on {where}")
        return (f"executor ray ({self.ray_address or 'a local Ray'}): num_cpus={self.cpus_per_unit:g}, "
                f"num_gpus={self.gpus_per_unit:g} per unit"
                + (f", at most {self.workers} at once" if self.workers else ""))


def default_settings() -> dict:
    """The executor keys' defaults, read from ``properties/overall.yaml`` (the one place they are written)."""
    import yaml

    from recbole_adaptssr.plugins import properties_file

    path = properties_file("overall.yaml")
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    missing = [key for key in KEYS if key not in values]
    if missing:
        raise KeyError(f"{path} defines no default for {missing}: the installation is incomplete")
    return {key: values[key] for key in KEYS}

"""``executor: ray``: every unit a Ray task, on a local Ray or the cluster at ``ray_address``.

Each task asks for ``num_cpus=cpus_per_unit`` and ``num_gpus=gpus_per_unit`` (fractions allowed: Ray packs
several units on a GPU and sets ``CUDA_VISIBLE_DEVICES`` for each), the resources a tuning trial asks for with
``--cpus_per_trial``/``--gpus_per_trial``; ``executor_workers`` caps the tasks in flight. A running Ray (``ray.init``
called before) is used as it is; otherwise the executor connects to ``ray_address`` or starts a local Ray, and
shuts down what it started. Tasks are not retried: a task whose worker dies fails its unit. On a cluster of several
machines the run folder must be on storage every node shares (units write their results and checkpoints there),
and the package must be installed on every node.
"""

from __future__ import annotations

import math

from recbole_adaptssr.execution.executor import Executor
from recbole_adaptssr.execution.result import UnitResult, write_result
from recbole_adaptssr.execution.worker import crashed_result, run_job


def run_job_task(job) -> dict:
    """The body of a unit's Ray task: the unit's GPUs are those Ray assigned to the task."""
    if job.gpu_id is None:
        import ray

        job.gpu_id = ",".join(str(g) for g in ray.get_gpu_ids())
    return run_job(job).as_dict()


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, settings, ranks=None, options=None):
        super().__init__(settings, ranks, options)
        self._tasks: dict = {}  # ObjectRef -> job
        self._remote = None
        self._started_ray = False

    @property
    def capacity(self) -> int | None:
        return self.settings.workers

    def start(self) -> None:
        import ray

        if not ray.is_initialized():
            if self.settings.ray_address:
                ray.init(address=self.settings.ray_address)
            else:
                cpus = None if self.settings.workers is None else \
                    self.settings.workers * max(1, math.ceil(self.settings.cpus_per_unit))
                ray.init(num_cpus=cpus, include_dashboard=False)
            self._started_ray = True
        available = ray.cluster_resources()
        for resource, need in (("CPU", self.settings.cpus_per_unit), ("GPU", self.settings.gpus_per_unit)):
            if need > available.get(resource, 0):
                self.close()
                raise ValueError(f"{resource.lower()}s_per_unit={need:g} but the Ray cluster has "
                                 f"{available.get(resource, 0):g} {resource}(s): no unit could ever start")
        self._remote = ray.remote(run_job_task).options(
            num_cpus=self.settings.cpus_per_unit, num_gpus=self.settings.gpus_per_unit, max_retries=0)

    def submit(self, job) -> str:
        job.gpu_id = None if self.settings.gpus_per_unit > 0 else ""  # None: the task reads what Ray assigned
        job.where.update(ray_address=self.settings.ray_address or "local")
        self._tasks[self._remote.remote(job)] = job
        return "a Ray task"

    def wait(self) -> list:
        import ray

        ready, _ = ray.wait(list(self._tasks), num_returns=1)
        results = []
        for ref in ready:
            job = self._tasks.pop(ref)
            try:
                results.append(UnitResult.from_dict(ray.get(ref)))
            except Exception as error:  # noqa: BLE001 - the task's worker died or Ray failed: this unit failed
                result = crashed_result(job, f"its Ray task failed: {type(error).__name__}: {error}")
                try:
                    write_result(job.run_dir, result)
                except OSError:
                    pass
                results.append(result)
        return results

    def close(self) -> None:
        import ray

        for ref in self._tasks:
            ray.cancel(ref, force=True)
        self._tasks.clear()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

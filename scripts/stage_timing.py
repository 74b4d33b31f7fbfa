"""Per-stage timings of pre-training stages, taken by hooks on ``AdaptSSRTrainer`` (used by the bench scripts).

For each stage: the first step's duration (Triton compilation, CUDA graph capture), the time from a given start
(the process's, or ``pretrain()``'s) to the end of the first step, the steady state of the first epoch
(``steady_ms_per_step``: median interval between consecutive step ends after ``warmup_steps`` steps;
``steady_sequences_per_s``: the sequences of those steps over their time), each epoch's wall time and
sequences/s (warm-up included), and the peak GPU memory, allocated and reserved, validation included.

Step ends are CUDA events recorded on the stream (no synchronisation, so the host runs ahead as it does without
the hooks); on a CPU, host clock readings.
"""

from __future__ import annotations

import statistics
import time

import torch

WARMUP_STEPS = 20


def _sync(cuda: bool):
    if cuda:
        torch.cuda.synchronize()


class StageTimer:
    """Hooks ``AdaptSSRTrainer.train_stage``, ``_train_epoch`` and ``_train_step`` while installed (a context
    manager); ``records[stage]`` holds what the module docstring lists."""

    def __init__(self, cuda: bool, start: float | None = None, warmup_steps: int = WARMUP_STEPS):
        from recbole_adaptssr.trainer import AdaptSSRTrainer

        self.trainer_class = AdaptSSRTrainer
        self.cuda = cuda
        self.start = time.perf_counter() if start is None else start
        self.warmup_steps = warmup_steps
        self.records = {}
        self.current = None
        self.originals = {}

    def __enter__(self):
        timer = self
        cls = self.trainer_class
        self.originals = {name: getattr(cls, name) for name in ("train_stage", "_train_epoch", "_train_step")}
        originals = self.originals

        def train_stage(trainer, stage, *args, **kwargs):
            _sync(timer.cuda)
            if timer.cuda:
                torch.cuda.reset_peak_memory_stats()
            timer.current = timer.records[stage] = {"stage": stage, "epochs": [], "first_step_s": None,
                                                    "stage_start": time.perf_counter()}
            out = originals["train_stage"](trainer, stage, *args, **kwargs)
            _sync(timer.cuda)
            rec = timer.current
            rec["stage_s"] = time.perf_counter() - rec.pop("stage_start")
            if timer.cuda:
                rec["peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
                rec["peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
            rec["best_valid_result"] = out.get("best_valid_result")
            rec["optimizer"] = type(trainer.optimizer).__name__
            return out

        def _train_epoch(trainer, train_data, epoch_idx, *args, **kwargs):
            rec = timer.current
            rec["_ends"], rec["_sizes"] = [], []
            _sync(timer.cuda)
            begin = time.perf_counter()
            out = originals["_train_epoch"](trainer, train_data, epoch_idx, *args, **kwargs)
            _sync(timer.cuda)
            seconds = time.perf_counter() - begin
            epoch = {"seconds": seconds, "steps": len(rec["_sizes"]), "sequences": sum(rec["_sizes"]),
                     "sequences_per_s": sum(rec["_sizes"]) / seconds}
            epoch.update(timer._steady(rec.pop("_ends"), rec.pop("_sizes")))
            rec["epochs"].append(epoch)
            return out

        def _train_step(trainer, interaction, *args, **kwargs):
            rec = timer.current
            first = rec["first_step_s"] is None
            if first:
                _sync(timer.cuda)
                begin = time.perf_counter()
            out = originals["_train_step"](trainer, interaction, *args, **kwargs)
            if first:
                _sync(timer.cuda)
                now = time.perf_counter()
                rec["first_step_s"] = now - begin
                rec["time_to_first_step_s"] = now - timer.start
                rec["graphed"] = bool(getattr(trainer.accelerator, "graph", None) is not None)
                rec["precision"] = getattr(trainer, "precision", None)
            rec["_sizes"].append(int(interaction[trainer.model.ITEM_SEQ].size(0)))
            if timer.cuda:
                event = torch.cuda.Event(enable_timing=True)
                event.record()
                rec["_ends"].append(event)
            else:
                rec["_ends"].append(time.perf_counter())
            return out

        for name, fn in (("train_stage", train_stage), ("_train_epoch", _train_epoch), ("_train_step", _train_step)):
            setattr(cls, name, fn)
        return self

    def __exit__(self, *exc):
        for name, fn in self.originals.items():
            setattr(self.trainer_class, name, fn)
        return False

    def _steady(self, ends, sizes) -> dict:
        """Median interval between step ends after the warm-up steps, and sequences/s over those steps. The last,
        partial batch runs eagerly: the steady state is the full batches', so it is left out before the warm-up
        steps are counted (an epoch of fewer steps than the warm-up keeps its last full interval)."""
        if sizes and sizes[-1] < max(sizes):
            ends, sizes = ends[:-1], sizes[:-1]
        skip = min(self.warmup_steps, max(len(ends) - 2, 0))
        if len(ends) - skip < 2:
            return {}
        if self.cuda:
            intervals = [a.elapsed_time(b) for a, b in zip(ends[skip:], ends[skip + 1:])]
        else:
            intervals = [1000 * (b - a) for a, b in zip(ends[skip:], ends[skip + 1:])]
        total_ms = sum(intervals)
        return {"warmup_steps": skip, "steady_steps": len(intervals),
                "steady_ms_per_step": statistics.median(intervals),
                "steady_mean_ms_per_step": total_ms / len(intervals),
                "steady_sequences_per_s": 1000 * max(sizes) * len(intervals) / total_ms}

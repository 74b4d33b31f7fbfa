"""Faster pre-training steps: the machinery :class:`~recbole_adaptssr.trainer.AdaptSSRTrainer` calls into.

A pre-training step at the paper's scale (B = 128, L = 100, d = 64) does about 0.1 ms of arithmetic; what it
costs is launching several hundred small kernels from Python, assembling batches on the CPU and copying them, and
the dense optimizer over the whole item table. What is here, with its setting (``properties/model/AdaptSSR.yaml``;
each can be set for one stage only as ``<stage>_<key>``):

* ``device_batches`` (exact, default on): the pre-training data set is one (users x L) matrix. It is copied to the
  training device once; each epoch takes the index batches from the RecBole ``TrainDataLoader`` itself (its own
  sampler and ``generator``, so the same shuffle, ``set_epoch`` and resume behaviour) and gathers the rows on the
  device: the same batches, in the same order, for the same seed as the loader's collate + ``.to(device)``.
* ``cuda_graphs`` (default on, CUDA only): the forward and backward of a full batch are captured once into a CUDA
  graph and replayed; the optimizer step, the gradient averaging of distributed runs, clipping and the NaN check
  stay eager, between replay and step, as in the eager step. The captured kernels are the eager ones and the
  default CUDA generator's Philox offsets advance exactly as in eager mode, so the losses, gradients and
  parameters are the eager ones; ``scripts/bench_pretrain.py --check`` compares them bitwise on the GPU. The
  last, partial batch of an epoch runs eagerly. A task is captured only if it is known to be graph-safe (no
  host synchronisation, no data-dependent shapes: :data:`GRAPH_SAFE_TASKS`, or a task whose ``cuda_graph_safe``
  is true: MLM where the fused softmax takes its loss, which then gets every position's row and the count of
  masked ones, padded to a fixed size). Not used with AMP / the gradient scaler or under ``torch.distributed``
  (the global-negatives gather synchronises). The NaN check of a replayed step is read one step later (the
  flag is copied to the host without waiting; the next step waits for that copy alone), so the host queues the
  next step while the GPU runs this one; an epoch's last flag is read when the epoch's batches run out.
* ``fused_optimizer`` (default off): ``torch.optim.Adam(fused=True)`` (one kernel over all parameters instead of
  a dozen passes of the foreach implementation). The same update formula, not the same float32 rounding: agrees
  with the default within float32 rounding (checked on CPU in tests/test_acceleration.py, on the GPU by the
  bench's ``--check``), not bitwise.
* ``pretrain_tf32`` (default off, CUDA only): TF32 tensor-core matrix products during a stage (10-bit mantissa
  inputs): changes the numbers; the one-step loss difference is reported by the bench's ``--check``.
* ``precision`` (default float32; :mod:`recbole_adaptssr.precision`): the stage's training step in float32, TF32
  or bfloat16 autocast (float32 master weights), the graphed step included.
* ``sparse_item_update`` (default off): Adam updates only the item-table rows a batch touched
  (:mod:`recbole_adaptssr.row_sparse_adam`: lazy-Adam semantics, not dense Adam's).

Losses are summed on the device in float64 (the eager loop summed Python floats, also float64, in the same
order: the same epoch loss), so no step waits for the GPU except for RecBole's NaN check.
"""

from __future__ import annotations

import contextlib
from logging import getLogger

import numpy as np
import torch

from recbole_adaptssr import precision as step_precision

__all__ = [
    "GRAPH_SAFE_TASKS",
    "DeviceBatches",
    "GraphedStep",
    "LaggedNanCheck",
    "StageAccelerator",
    "accumulate_losses",
    "build_fused_optimizer",
    "loader_index_batches",
    "losses_to_float",
]

#: Pretext tasks whose training loss can be captured in a CUDA graph: a fixed sequence of kernels for a fixed
#: batch shape, no host synchronisation, randomness from the default generator only.
GRAPH_SAFE_TASKS = frozenset({"ssr"})

#: Warm-up forward/backward passes (on a side stream, parameters untouched) before a capture.
GRAPH_WARMUP_STEPS = 2


# ------------------------------------------------------------------------------------------------ loss sums
def accumulate_losses(total, losses):
    """``total + losses`` (a loss tensor or a tuple of them) as float64 tensors on the losses' device, without
    synchronising. Converting float32 to float64 is exact and the sum runs in the order of the steps, so the
    result equals the eager loop's Python-float sum."""
    if isinstance(losses, tuple):
        parts = tuple(part.detach().to(torch.float64) for part in losses)
        return parts if total is None else tuple(t + p for t, p in zip(total, parts))
    value = losses.detach().to(torch.float64)
    return value if total is None else total + value


def losses_to_float(total):
    """The Python float (or tuple of floats) of an :func:`accumulate_losses` sum (None stays None)."""
    if total is None:
        return None
    if isinstance(total, tuple):
        return tuple(float(part) for part in total)
    return float(total)


# ------------------------------------------------------------------------------------------------ optimizer
def build_fused_optimizer(params, learner: str, learning_rate: float, weight_decay: float):
    """``torch.optim.Adam``/``AdamW`` with ``fused=True`` (RecBole's ``adam``/``adamw`` learners), or None when
    ``learner`` is another optimizer (the caller then builds RecBole's)."""
    name = str(learner).lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, fused=True)
    return None


# ------------------------------------------------------------------------------------------------ batches
def _index_batch(index):
    """Collate function that returns the sampled row indices themselves (module level: picklable for workers)."""
    return np.asarray(index, dtype=np.int64)


def loader_index_batches(loader) -> list:
    """The row indices of every batch one epoch of RecBole's ``loader`` would yield, in order, drawn by the loader
    itself (its sampler, generator and distributed sampler): only its collate function is swapped for the
    duration of the epoch, so the generator advances exactly as when it yields the batches."""
    original = loader.collate_fn
    loader.collate_fn = _index_batch
    try:
        return [np.asarray(index, dtype=np.int64) for index in loader]
    finally:
        loader.collate_fn = original


class DeviceBatches:
    """The batches of a pre-training ``TrainDataLoader``, gathered on the device from a device copy of its data set.

    The data set's fields are copied once per data set (item ids as int32 when they fit, widened back when
    gathered: the same values); each epoch's indices come from :func:`loader_index_batches` and travel in one
    copy. Only for loaders whose collate is the identity on rows (no transform, no negative sampling), which is
    what pre-training uses; :meth:`supports` says whether a loader is one.
    """

    def __init__(self, device):
        self.device = torch.device(device)
        self._data = None  # (data set, {field: (device tensor, dtype of the original)})

    @staticmethod
    def supports(loader) -> bool:
        from recbole.data.dataloader import TrainDataLoader
        from recbole.data.transform import Equal

        return (type(loader) is TrainDataLoader and isinstance(getattr(loader, "transform", None), Equal)
                and loader.neg_sample_args.get("distribution", "none") == "none"
                and not loader.neg_sample_args.get("dynamic", False))

    def _fields(self, dataset):
        if self._data is None or self._data[0] is not dataset:
            fields = {}
            for name, values in dataset.inter_feat.interaction.items():
                dtype = values.dtype
                if dtype == torch.int64 and values.numel() and int(values.max()) < 2**31 and int(values.min()) >= -2**31:
                    values = values.to(torch.int32)
                fields[name] = (values.to(self.device), dtype)
            self._data = (dataset, fields)
        return self._data[1]

    def epoch(self, loader):
        """The epoch's batches (RecBole ``Interaction`` objects on the device), drawing the loader's shuffle now."""
        from recbole.data.interaction import Interaction

        fields = self._fields(loader._dataset)
        batches = loader_index_batches(loader)
        if not batches:
            return []
        flat = torch.from_numpy(np.concatenate(batches)).to(self.device, non_blocking=False)
        out = []
        for index in flat.split([len(b) for b in batches]):
            out.append(Interaction({name: values.index_select(0, index).to(dtype)
                                    for name, (values, dtype) in fields.items()}))
        return out

    def close(self):
        self._data = None


# ------------------------------------------------------------------------------------------------ CUDA graphs
class GraphedStep:
    """The forward and backward of ``loss_func`` on batches of one shape, captured into a CUDA graph.

    :meth:`run` copies a batch into the static inputs, replays the graph and points every parameter's ``.grad``
    at the graph's gradient buffers (an eager step in between may have set them to None); it returns the static
    loss tensor (overwritten by the next replay). The caller then does what follows ``backward`` eagerly (gradient
    averaging, clipping, NaN check, optimizer step)."""

    def __init__(self, model, loss_func, example, device, context=contextlib.nullcontext):
        self.model = model
        self.loss_func = loss_func
        self.device = device
        self.context = context  # e.g. the stage's precision (autocast), entered around every captured forward
        self.keys = tuple(sorted(example.interaction))
        self.static = {key: example[key].clone() for key in self.keys}
        self.signature = self._signature(example)
        self.graph = None
        self.loss = None
        self.grads = {}

    def _signature(self, interaction):
        return tuple((key, tuple(interaction[key].shape), interaction[key].dtype) for key in sorted(interaction.interaction))

    def matches(self, interaction) -> bool:
        return self._signature(interaction) == self.signature

    def capture(self):
        """Warm up (forward/backward on a side stream; parameters are not updated), then capture. The CUDA RNG
        state is restored afterwards, so the first replay draws what the first eager step would have.

        No autograd graph of these parameters built on another stream may be alive at capture (a loss tensor kept
        from an eager training step): its AccumulateGrad nodes carry that stream and the captured backward would
        wait on it, which CUDA refuses ("operation would make the legacy stream depend on a capturing blocking
        stream"; torch 2.11 on an H100). The trainer drops each step's loss before the next; validation builds no
        graph."""
        from recbole.data.interaction import Interaction

        params = [p for p in self.model.parameters() if p.requires_grad]
        rng = torch.cuda.get_rng_state(self.device)
        inputs = Interaction(self.static)
        for p in params:
            p.grad = None
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                with self.context():
                    loss = self.loss_func(inputs)
                loss.backward()
                for p in params:
                    p.grad = None
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            with self.context():
                loss = self.loss_func(inputs)
            loss.backward()
        self.graph, self.loss = graph, loss
        self.grads = {p: p.grad for p in params if p.grad is not None}
        torch.cuda.set_rng_state(rng, self.device)

    def run(self, interaction):
        for key in self.keys:
            self.static[key].copy_(interaction[key], non_blocking=True)
        self.graph.replay()
        for p in self.model.parameters():
            if p.requires_grad:
                p.grad = self.grads.get(p)
        return self.loss

    def close(self):
        self.graph, self.loss, self.grads, self.static = None, None, {}, {}


class LaggedNanCheck:
    """RecBole's "Training loss is nan" check of a replayed step, read one step later: :meth:`push` enqueues the
    loss's NaN flag and its copy to pinned host memory (no wait) and reads the previous step's flag, waiting for
    that copy alone; :meth:`flush` reads the last one. The same error, raised one step later."""

    def __init__(self, device):
        self.device = device
        self.flags = [torch.zeros(1, dtype=torch.bool, pin_memory=True) for _ in range(2)]
        self.events = [torch.cuda.Event() for _ in range(2)]
        self.pending = None  # index of the flag not yet read

    def push(self, loss):
        slot = 0 if self.pending is None else 1 - self.pending
        self.flags[slot].copy_(torch.isnan(loss).reshape(1), non_blocking=True)
        self.events[slot].record(torch.cuda.current_stream(self.device))
        previous, self.pending = self.pending, slot
        if previous is not None:
            self._read(previous)

    def flush(self):
        if self.pending is not None:
            slot, self.pending = self.pending, None
            self._read(slot)

    def _read(self, slot):
        self.events[slot].synchronize()
        if bool(self.flags[slot]):
            self.pending = None
            raise ValueError("Training loss is nan")


# ------------------------------------------------------------------------------------------------ per stage
def flag(settings, key, default=False):
    """The bool setting ``key`` of a stage's settings view (an error naming the key otherwise)."""
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{settings.key(key)} must be True or False, got {value!r}")
    return value


class StageAccelerator:
    """What one pre-training stage of a trainer uses: device batches, the graphed step, TF32; built by
    ``AdaptSSRTrainer.train_stage`` from the stage's settings, closed at the stage's end."""

    def __init__(self, trainer, settings):
        from recbole_adaptssr import distributed

        self.trainer = trainer
        self.device = torch.device(trainer.device)
        cuda = self.device.type == "cuda"
        self.device_batches = DeviceBatches(self.device) if flag(settings, "device_batches", True) else None
        task = trainer.model.pretext_task
        graph_safe = getattr(task, "cuda_graph_safe", getattr(task, "name", None) in GRAPH_SAFE_TASKS)
        self.use_graphs = (cuda and flag(settings, "cuda_graphs", True) and graph_safe
                           and not trainer.enable_amp and not trainer.enable_scaler
                           and not distributed.is_distributed())
        self.precision = step_precision.setting(settings)
        self._saved_precision = trainer.precision
        trainer.precision = self.precision
        self.nan_check = LaggedNanCheck(self.device) if self.use_graphs else None
        self.tf32 = cuda and flag(settings, "pretrain_tf32", False)
        self._saved_tf32 = None
        if self.tf32:
            self._saved_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.graph = None
        getLogger().debug(f"[{settings.stage}] acceleration: device_batches={self.device_batches is not None}, "
                          f"cuda_graphs={self.use_graphs}, tf32={self.tf32}, precision={self.precision}")

    def batches(self, train_data):
        """The epoch's batches gathered on the device, or None when device batches do not apply (the trainer then
        moves the loader's own batches)."""
        if self.device_batches is not None and DeviceBatches.supports(train_data):
            return self.device_batches.epoch(train_data)
        return None

    def graphed_step(self, interaction, loss_func):
        """The :class:`GraphedStep` for this batch (captured on first use), or None for an eager step."""
        if not self.use_graphs:
            return None
        if self.graph is None:
            if interaction[self.trainer.model.ITEM_SEQ].size(0) != self.trainer.config["train_batch_size"]:
                return None  # capture on a full batch
            step = GraphedStep(self.trainer.model, loss_func, interaction, self.device,
                               context=lambda: step_precision.training_precision(self.device, self.precision))
            step.capture()
            self.graph = step
        if self.graph.loss_func != loss_func or not self.graph.matches(interaction):
            return None
        return self.graph

    def close(self):
        if self.nan_check is not None:
            self.nan_check.pending = None
        if self.graph is not None:
            self.graph.close()
            self.graph = None
        if self._saved_precision is not None:
            self.trainer.precision, self._saved_precision = self._saved_precision, None
        if self.device_batches is not None:
            self.device_batches.close()
        if self._saved_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._saved_tf32
            self._saved_tf32 = None

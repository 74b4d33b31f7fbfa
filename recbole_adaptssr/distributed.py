"""Data-parallel training through ``torch.distributed`` (NCCL on GPUs, gloo on CPUs).

A process learns that it is one of several from the usual launcher variables (``torchrun`` sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); :func:`init_distributed` joins the process
group ONCE per process, and every :class:`~recbole_adaptssr.config.Config` built afterwards (one per task and seed)
only reads the group's rank and size. Without those variables everything here is a no-op for a single process.

What this module provides, all exact:

* :func:`all_reduce_gradients`: the mean gradient over ranks, applied after ``backward`` and before the optimizer
  step (what DDP computes, without its bucketed overlap);
* :func:`gather_with_grad`: the representations of every rank's sequences, concatenated in rank order, with the
  gradient of each slice flowing back to the rank that owns it, so that in-batch negatives come from the global
  batch (``ddp_negatives: global``);
* :func:`all_gather_object`, :func:`broadcast_object`, :func:`barrier`, :func:`is_main_process`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_distributed() -> bool:
    """True when a launcher (``torchrun``, or :func:`spawn`) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and all(v in os.environ for v in LAUNCH_VARIABLES)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", rank())) if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


def init_distributed(backend: str | None = None, use_gpu: bool = True) -> bool:
    """Join the process group the launcher describes (once per process); return whether this run is distributed.

    ``backend``: ``nccl`` or ``gloo``; default NCCL when CUDA is usable (``use_gpu``) and gloo otherwise. With
    NCCL each process uses the GPU ``LOCAL_RANK``."""
    if is_distributed():
        return True
    if not launched_distributed():
        return False
    cuda = use_gpu and torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    if backend == "nccl":
        if not cuda:
            raise ValueError("ddp_backend=nccl needs CUDA GPUs; use gloo on CPUs")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


_GATHER = {"enabled": True}


def gathering() -> bool:
    """Whether losses gather in-batch negatives across ranks now: in a distributed run, outside :func:`local_batches`."""
    return _GATHER["enabled"] and is_distributed()


@contextmanager
def local_batches():
    """Within this block every rank works on batches of its own (validation): no cross-rank gathering."""
    previous = _GATHER["enabled"]
    _GATHER["enabled"] = False
    try:
        yield
    finally:
        _GATHER["enabled"] = previous


@contextmanager
def single_process_view(config):
    """Within this block ``config["single_spec"]`` is True: RecBole's data loaders built here read every sample
    (no DistributedSampler) and its trainer wraps nothing."""
    previous = config.final_config_dict.get("single_spec", True)
    config.final_config_dict["single_spec"] = True
    try:
        yield config
    finally:
        config.final_config_dict["single_spec"] = previous


def seed_rank(seed: int) -> None:
    """Give each rank its own random stream (dropout masks, augmentations) after the shared model was built:
    torch, numpy and ``random`` seeded with ``seed + rank``. Nothing in a single process (its stream stays as
    it was)."""
    if not is_distributed():
        return
    import random

    import numpy as np

    random.seed(seed + rank())
    np.random.seed(seed + rank())
    torch.manual_seed(seed + rank())


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(value, src: int = 0):
    """``value`` of rank ``src`` on every rank (any picklable object)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_object(value) -> list:
    """Every rank's ``value``, in rank order."""
    if not is_distributed():
        return [value]
    out = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Every parameter and buffer of ``module`` set to rank ``src``'s values (all ranks start from one model)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=src)


def all_reduce_gradients(parameters) -> None:
    """Replace each parameter's gradient with its mean over ranks. A parameter without a gradient on this rank
    counts as zero (every rank reduces the same list, whatever its own graph used)."""
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        elif p.grad.is_sparse:
            p.grad = p.grad.to_dense()
    n = world_size()
    groups = {}
    for p in params:
        groups.setdefault((p.grad.device, p.grad.dtype), []).append(p)
    for group in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat)
        flat.div_(n)
        offset = 0
        for p in group:
            numel = p.grad.numel()
            p.grad.copy_(flat[offset:offset + numel].view_as(p.grad))
            offset += numel


class _GatherWithGrad(torch.autograd.Function):
    """All-gather (rows padded to the largest rank's count) in the forward; in the backward, each rank's slice
    receives the SUM over ranks of the gradients that reached it (an all-reduce, which every backend supports,
    then this rank's slice)."""

    @staticmethod
    def forward(ctx, tensor, sizes):
        ctx.offset, ctx.size = sum(sizes[: rank()]), tensor.size(0)
        padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
        padded[: tensor.size(0)] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.offset: ctx.offset + ctx.size], None


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(global, offset)``: the rows of every rank concatenated in rank order (ranks may hold different numbers
    of rows), and where this rank's rows start. Gradients flow back to their owners. Single process: ``(tensor, 0)``.

    Every rank must compute the same loss on ``global`` (the loss is then averaged over ranks by
    :func:`all_reduce_gradients`, and the all-reduce in the backward sums the N identical copies: the result is the
    gradient of the single-process loss on the global batch)."""
    if not is_distributed():
        return tensor, 0
    counts = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world_size())]
    dist.all_gather(counts, torch.tensor([tensor.size(0)], dtype=torch.long, device=tensor.device))
    sizes = [int(c.item()) for c in counts]
    return _GatherWithGrad.apply(tensor.contiguous(), sizes), sum(sizes[: rank()])


# ----------------------------------------------------------------------------------------------------- launching
def spawn(function, nproc: int, *args, world_size: int | None = None, ip: str = "localhost", port: int | str = 29500,
          offset: int = 0) -> None:
    """RecBole's ``--nproc`` convention: start ``nproc`` processes on this machine, process ``k`` being global rank
    ``offset + k`` of ``world_size`` (default ``nproc``; several machines: each runs its share with its own
    ``offset``, all with the same ``ip``/``port`` of rank 0's machine), and call ``function(*args)`` in each with the
    launcher variables ``torchrun`` would set, and, as ``torchrun``, one torch thread per process when ``nproc > 1``
    and ``OMP_NUM_THREADS`` is unset. Returns when every process has ended (an error in one is raised)."""
    import torch.multiprocessing as mp

    world_size = int(world_size or nproc)
    if nproc < 1 or world_size < nproc or not 0 <= offset <= world_size - nproc:
        raise ValueError(f"nproc={nproc}, world_size={world_size}, offset={offset}: need 1 <= nproc <= world_size "
                         "and 0 <= offset <= world_size - nproc")
    mp.spawn(_spawned, args=(function, args, nproc, world_size, str(ip), str(port), int(offset)), nprocs=nproc,
             join=True)


def _spawned(local, function, args, nproc, world_size, ip, port, offset):
    os.environ.update(RANK=str(offset + local), LOCAL_RANK=str(local), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR=ip, MASTER_PORT=port)
    if nproc > 1 and "OMP_NUM_THREADS" not in os.environ:
        # as torchrun: one intra-op thread per process unless OMP_NUM_THREADS says otherwise (the same sums in the
        # same order as a torchrun launch, hence the same results, and no oversubscribed cores)
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    try:
        function(*args)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

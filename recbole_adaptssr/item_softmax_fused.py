"""Fused full-softmax item cross-entropy: Triton kernels that never write a logit to memory.

The blocked cross-entropy of :mod:`recbole_adaptssr.item_softmax` computes each block of logits with a matrix
product, writes it, reads it back for the softmax and again for the gradients' products: its time goes to memory
traffic over (N x V) floats and to padding the last row block. Here each logit lives in registers only:

* forward: one program per (row block, item split) keeps a running maximum and sum of exponentials over its items
  (an online logsumexp); the splits' partial results are combined into the row's logsumexp;
* backward, ``grad hidden``: one program per (row block, item split) recomputes its logits, turns them into
  ``softmax * upstream gradient`` and accumulates ``p @ W``; the splits' partial sums are added, and the target's
  one-hot term (``- g_r W[t_r]``) subtracted;
* backward, ``grad item_weight`` and ``grad bias``: one program per block of items loops over all rows,
  recomputes the logits and accumulates ``p.T @ hidden`` and the column sums of ``p``; every item's gradient is
  written once (no atomics), then the one-hot term is added by ``index_put_(accumulate=True)``, which sums a
  target repeated in the batch in a fixed order: the gradients do not depend on scheduling.

The target's score (an exact float32 dot product of the row with its item) and the one-hot terms are ordinary
tensor operations, as in the blocked version. Nothing of size (N x V) is ever allocated: memory is
O(N * d * splits + V * d).

Padded rows (``valid_rows``): the kernels read the number of valid rows from a device tensor, so a caller whose
number of rows depends on the data (MLM's masked positions) passes buffers of a fixed capacity and the count, with
no host synchronisation (what a CUDA graph needs); a row block past the count costs no arithmetic.

Precision of the matrix products inside the kernels (``precision``):

* ``"tf32x3"`` (default): each float32 operand split into a TF32 high part and a TF32 remainder, three tensor-core
  products: float32 accuracy (on an H200 at the TTL scale its loss and gradients differ from float64 by what the
  blocked float32 version's do: docs/performance.md);
* ``"ieee"``: float32 products on the CUDA cores, the blocked version's arithmetic in another summation order; Triton
  compiles these to slow code (about 7x the blocked version's time on an H200): for checking, not for speed;
* ``"tf32"``: one TF32 product (10-bit mantissa operands): 2.3x faster than ``tf32x3``, relative gradient errors
  around 1e-4: not float32-exact;
* ``"bf16"``: bfloat16 operands (8-bit mantissa), float32 accumulation and softmax: the products of
  ``precision: bf16`` (:mod:`recbole_adaptssr.precision`).

Inputs are float32 (other dtypes use the blocked version). Kernels run on CUDA, or anywhere under Triton's
interpreter (``TRITON_INTERPRET=1``, which the CPU tests use). This module imports torch and
:mod:`recbole_adaptssr.item_scores` (torch alone); Triton is imported when first needed.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from recbole_adaptssr.item_scores import target_scores

__all__ = ["fused_available", "fused_unavailable_reason", "fused_item_cross_entropy", "tiles", "triton_installed"]

#: per precision: (rows, items) per tile, Triton's num_warps and num_stages (d is padded to a power of two >= 16, the
#: smallest tl.dot operand). The fastest shapes at V = 645,972, d = 64, N = 2,112 (Triton 3.6,
#: scripts/bench_item_softmax.py --fused-tiles, docs/performance.md), per GPU model (the name CUDA reports holds the
#: key); other devices take "default".
TILES = {
    "default": {"ieee": (32, 128, 4, 2), "tf32x3": (64, 64, 4, 3), "tf32": (64, 128, 4, 2), "bf16": (64, 128, 4, 2)},
    "H200": {"ieee": (32, 128, 4, 2), "tf32x3": (64, 64, 4, 3), "tf32": (64, 128, 4, 2), "bf16": (64, 128, 4, 2)},
    "H100": {"ieee": (32, 128, 4, 2), "tf32x3": (64, 64, 4, 3), "tf32": (64, 128, 4, 2), "bf16": (64, 128, 4, 2)},
}
# programs of the two row-block kernels: about this many per streaming multiprocessor (the item range is split)
PROGRAMS_PER_SM = 4


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def fused_unavailable_reason(hidden: torch.Tensor) -> str | None:
    """Why the fused kernels cannot run on ``hidden`` (None when they can)."""
    if hidden.dtype != torch.float32:
        return f"the fused kernels take float32 inputs, got {hidden.dtype}"
    if not triton_installed():
        return "Triton is not installed (it comes with CUDA builds of torch)"
    if hidden.device.type != "cuda" and not _interpreted():
        return f"the fused kernels run on CUDA devices (or under TRITON_INTERPRET=1), got {hidden.device}"
    return None


def fused_available(hidden: torch.Tensor) -> bool:
    return fused_unavailable_reason(hidden) is None


def _kernels():
    """The Triton kernels (their module imports Triton; importing this one must not need it)."""
    from recbole_adaptssr import item_softmax_triton

    return item_softmax_triton.lse_partials, item_softmax_triton.grad_hidden_partials, item_softmax_triton.grad_items


@functools.lru_cache(maxsize=None)
def _device_model(device: torch.device) -> str:
    """The :data:`TILES` key of ``device``: the first key other than "default" in its CUDA name, else "default"."""
    if device.type != "cuda":
        return "default"
    name = torch.cuda.get_device_name(device)
    return next((key for key in TILES if key != "default" and key in name), "default")


def tiles(device: torch.device, precision: str) -> tuple:
    """(rows, items, num_warps, num_stages) of the kernels' tiles on ``device`` for ``precision``."""
    return TILES[_device_model(device)][precision]


def _block_dim(dim: int) -> int:
    return max(16, 1 << (dim - 1).bit_length())


def _splits(n_rows: int, n_items: int, device, block_rows: int, block_items: int) -> tuple:
    """(splits, items per split): enough programs to fill the device, each split non-empty and tile-aligned."""
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
    else:
        sms = 2
    row_blocks = -(-n_rows // block_rows)
    tiles = -(-n_items // block_items)
    wanted = max(1, min(tiles, -(-PROGRAMS_PER_SM * sms // row_blocks)))
    items_per_split = -(-tiles // wanted) * block_items
    return -(-n_items // items_per_split), items_per_split


def _valid_mask(count: torch.Tensor, capacity: int) -> torch.Tensor:
    return torch.arange(capacity, device=count.device) < count


class _FusedItemCrossEntropy(torch.autograd.Function):

    @staticmethod
    def forward(ctx, hidden, item_weight, bias, targets, reduction, precision, count, expected_rows):
        hidden = hidden.contiguous()
        item_weight = item_weight.contiguous()
        targets = targets.contiguous()
        capacity, dim = hidden.shape
        n_items = item_weight.size(0)
        padded = count is not None  # rows [count, capacity) are padding
        if not padded:
            count = torch.full((1,), capacity, dtype=torch.int32, device=hidden.device)
        count = count.reshape(1).to(torch.int32)
        lse_partials, _, _ = _kernels()
        block_rows, block_items, warps, stages = tiles(hidden.device, precision)
        splits, items_per_split = _splits(min(expected_rows or capacity, capacity), n_items, hidden.device,
                                          block_rows, block_items)
        maxes = torch.empty((splits, capacity), dtype=torch.float32, device=hidden.device)
        sums = torch.empty_like(maxes)
        has_bias = bias is not None
        bias_arg = bias.contiguous() if has_bias else item_weight  # never read without a bias
        grid = (-(-capacity // block_rows), splits)
        lse_partials[grid](hidden, item_weight, bias_arg, maxes, sums, count, capacity, n_items, dim, items_per_split,
                           hidden.stride(0), item_weight.stride(0), HAS_BIAS=has_bias, PRECISION=precision,
                           BLOCK_N=block_rows, BLOCK_V=block_items, BLOCK_D=_block_dim(dim),
                           num_warps=warps, num_stages=stages)
        top = maxes.max(dim=0).values
        lse = top + torch.log((sums * torch.exp(maxes - top)).sum(dim=0))
        row_loss = lse - target_scores(hidden, targets, item_weight, bias)
        valid = _valid_mask(count, capacity) if padded else None
        if padded:  # padding rows hold no softmax (their partial results are empty): zero, never NaN
            lse = torch.where(valid, lse, 0.0)
            row_loss = torch.where(valid, row_loss, 0.0)
        ctx.save_for_backward(hidden, item_weight, bias, targets, lse, count)
        ctx.settings = (reduction, precision, splits, items_per_split, padded,
                        (block_rows, block_items, warps, stages))
        if reduction == "none":
            return row_loss
        total = row_loss.sum()
        if reduction == "sum":
            return total
        return total / (count.to(torch.float32).squeeze(0) if padded else capacity)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        hidden, item_weight, bias, targets, lse, count = ctx.saved_tensors
        reduction, precision, splits, items_per_split, padded, (block_rows, block_items, warps, stages) = ctx.settings
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        capacity, dim = hidden.shape
        n_items = item_weight.size(0)
        has_bias = bias is not None
        need_b = need_b and has_bias
        g = grad_output.to(torch.float32)
        if reduction == "mean":
            g = g / (count.to(torch.float32).squeeze(0) if padded else capacity)
        g = g.expand(capacity) if reduction != "none" else g
        put_targets = targets
        if padded:
            valid = _valid_mask(count, capacity)
            g = torch.where(valid, g, 0.0)
            # padding rows add zeros; spread over distinct items, they make no long run of one repeated index
            # (index_put_ sums a repeated index's values one after another)
            spread = torch.arange(capacity, device=targets.device) % n_items
            put_targets = torch.where(valid, targets, spread)
        g = g.contiguous()
        _, grad_hidden_partials, grad_items = _kernels()
        common = dict(HAS_BIAS=has_bias, PRECISION=precision, BLOCK_N=block_rows, BLOCK_V=block_items,
                      BLOCK_D=_block_dim(dim), num_warps=warps, num_stages=stages)
        bias_arg = bias if has_bias else item_weight
        grad_h = grad_w = grad_b = None
        if need_h:
            partials = torch.empty((splits, capacity, dim), dtype=torch.float32, device=hidden.device)
            grad_hidden_partials[(-(-capacity // block_rows), splits)](
                hidden, item_weight, bias_arg, lse, g, partials, count, capacity, n_items, dim,
                items_per_split, hidden.stride(0), item_weight.stride(0), **common)
            grad_h = partials.sum(dim=0)
            grad_h.sub_(g.unsqueeze(1) * item_weight.index_select(0, targets))
        if need_w or need_b:
            grad_w = torch.empty_like(item_weight)
            grad_b = torch.empty((n_items,), dtype=torch.float32, device=hidden.device) if has_bias else None
            grad_items[(-(-n_items // block_items),)](
                hidden, item_weight, bias_arg, lse, g, grad_w, grad_w if grad_b is None else grad_b, count,
                n_items, dim, hidden.stride(0), item_weight.stride(0), **common)
            # the one-hot term; index_put_ with accumulate sums a repeated target's rows in a fixed order
            # (sorted, not atomic): the gradient does not depend on scheduling
            grad_w.index_put_((put_targets,), g.unsqueeze(1) * hidden.neg(), accumulate=True)
            if grad_b is not None:
                grad_b.index_put_((put_targets,), g.neg(), accumulate=True)
            grad_w = grad_w if need_w else None
            grad_b = grad_b if need_b else None
        return grad_h, grad_w, grad_b, None, None, None, None, None


def fused_item_cross_entropy(hidden, item_weight, targets, bias=None, *, reduction="mean", precision="tf32x3",
                             valid_rows=None, expected_rows=None):
    """The cross-entropy of :func:`recbole_adaptssr.item_softmax.item_cross_entropy` through the fused kernels.

    The inputs and ``precision`` are assumed checked by that function (shapes, devices, target range, one of
    :data:`recbole_adaptssr.item_softmax.PRECISIONS`); this one checks only what the kernels add: float32 inputs on a
    device they run on. ``valid_rows``, ``expected_rows``: as there.
    """
    reason = fused_unavailable_reason(hidden)
    if reason is not None:
        raise ValueError(f"fused item cross-entropy unavailable: {reason}")
    return _FusedItemCrossEntropy.apply(hidden, item_weight, bias, targets, reduction, precision, valid_rows,
                                        expected_rows)

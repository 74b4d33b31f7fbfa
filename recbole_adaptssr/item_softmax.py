"""Full-softmax cross-entropy and ranking statistics over a large item table, in fixed-size blocks.

The MLM warm-up predicts, for every masked position, the original item among ALL items. The direct way,
``F.cross_entropy(hidden @ item_weight.T + bias, targets)``, materialises an (N, V) logits tensor whose N (the
number of masked positions) changes at every step: on the CPU the allocator fragments (resident memory grows
epoch after epoch), on a GPU the caching allocator keeps one segment per size it has seen.

Here the rows are processed in blocks of ``block_rows`` rows (the last block is padded to the full size and its
padded rows are masked out) and the items in blocks of ``block_items`` columns, each block contributing its
logsumexp to the row's (a streaming logsumexp), so the only large intermediates have a fixed shape:
(block_rows, block_items), and (block_rows, V % block_items) for the last, narrower item block, whose width depends
on V alone. The backward recomputes each block of logits instead of storing it; what is kept between the two is
one logsumexp per row and item block. Memory is O(block_rows * block_items + N * V / block_items + N * d + V * d)
(hidden, its gradient and the item table's gradient included), and the result is the exact cross-entropy of the
full softmax, with exact gradients for ``hidden``, ``item_weight`` and ``bias``.

This module imports torch alone (not RecBole), so it can be used and tested on its own. ``kernel="fused"``
computes the same loss with the Triton kernels of :mod:`recbole_adaptssr.item_softmax_fused`, which write no
logit to memory at all (float32 on CUDA).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from recbole_adaptssr.item_scores import target_scores

__all__ = [
    "KERNELS",
    "PRECISIONS",
    "DEFAULT_BLOCK_ROWS",
    "DEFAULT_BLOCK_ITEMS",
    "fused_applies",
    "item_cross_entropy",
    "item_ranking_statistics",
]

# Block sizes when none is given, per device type (other types take the CPU's). Measured with
# scripts/bench_item_softmax.py at the TTL scale (V = 645,972, d = 64), forward + backward, float32:
#   H100, N = 3,840: naive 71 ms, 28.1 GB allocated; 1024 x 32768 blocks 80 ms, 0.97 GB (2048 rows: 74 ms,
#   1.4 GB; 8192 items: 97 ms); bfloat16: naive 61 ms, 28 GB, blocked 48 ms, 0.76 GB.
#   CPU (2 cores), N = 1,000: naive 57 s, 7.4 GB above the start; 1024 x 8192 blocks 24 s, 0.42 GB; 256-row
#   blocks 33 s (the item table is streamed once per row block, and grad W's products are thinner).
# Larger row blocks waste more on the padding of the last one (block_rows / 2 rows on average when N varies).
DEFAULT_BLOCK_ROWS = {"cpu": 1024, "cuda": 1024}
DEFAULT_BLOCK_ITEMS = {"cpu": 8192, "cuda": 32768}

_REDUCTIONS = ("mean", "sum", "none")

#: how :func:`item_cross_entropy` computes: in blocks (any device and dtype), with the fused Triton kernels of
#: :mod:`recbole_adaptssr.item_softmax_fused` (float32 on CUDA), or ``auto``: fused where it can run, else blocked
KERNELS = ("blocked", "fused", "auto")
#: the fused kernels' matrix products (see :mod:`recbole_adaptssr.item_softmax_fused`); the first is the default
PRECISIONS = ("tf32x3", "ieee", "tf32", "bf16")


def _check_block(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _default_blocks(device, block_rows, block_items):
    """The given block sizes, or the device type's defaults (the CPU's for device types not listed)."""
    kind = device.type if device.type in DEFAULT_BLOCK_ROWS else "cpu"
    if block_rows is None:
        block_rows = DEFAULT_BLOCK_ROWS[kind]
    if block_items is None:
        block_items = DEFAULT_BLOCK_ITEMS[kind]
    return _check_block("block_rows", block_rows), _check_block("block_items", block_items)


def _shape(value):
    return tuple(getattr(value, "shape", ()))


def _check_inputs(hidden, item_weight, targets, bias, block_rows, block_items, check_targets=True):
    """Validate shapes, dtypes, devices and (``check_targets``) the target range; returns (block_rows, block_items)."""
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 2:
        raise ValueError(f"hidden must be a 2-D (N, d) tensor, got shape {_shape(hidden)}")
    if not hidden.is_floating_point():
        raise ValueError(f"hidden must be a floating-point tensor, got {hidden.dtype}")
    if not isinstance(item_weight, torch.Tensor) or item_weight.dim() != 2:
        raise ValueError(f"item_weight must be a 2-D (V, d) tensor, got shape {_shape(item_weight)}")
    n_rows, dim = hidden.shape
    n_items = item_weight.size(0)
    if item_weight.size(1) != dim:
        raise ValueError(f"hidden is (N, d) = {tuple(hidden.shape)} but item_weight is (V, d) = "
                         f"{tuple(item_weight.shape)}: their d differ")
    if n_items == 0:
        raise ValueError("item_weight has no rows (V == 0): there is no item to predict")
    if item_weight.dtype != hidden.dtype:
        raise ValueError(f"item_weight has dtype {item_weight.dtype} but hidden has {hidden.dtype}: cast one")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (n_items,):
            raise ValueError(f"bias must be a 1-D (V,) = ({n_items},) tensor, got shape {_shape(bias)}")
        if bias.dtype != hidden.dtype:
            raise ValueError(f"bias has dtype {bias.dtype} but hidden has {hidden.dtype}: cast one")
    if not isinstance(targets, torch.Tensor) or targets.dim() != 1 or targets.size(0) != n_rows:
        raise ValueError(f"targets must be a 1-D (N,) = ({n_rows},) tensor, got shape {_shape(targets)}")
    if targets.dtype != torch.long:
        raise ValueError(f"targets must be torch.long item indices, got {targets.dtype}")
    devices = {t.device for t in (hidden, item_weight, targets, bias) if t is not None}
    if len(devices) != 1:
        names = sorted(map(str, devices))
        raise ValueError(f"hidden, item_weight, targets and bias must be on one device, got {names}")
    if n_rows == 0:
        raise ValueError("no rows to predict (N == 0): the loss of an empty batch is undefined; skip the call")
    # one synchronisation on a GPU: a wrong index would otherwise read out of bounds in index_select
    if check_targets and bool(((targets < 0) | (targets >= n_items)).any()):
        raise ValueError(f"targets must lie in [0, V) = [0, {n_items}), got values in "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    return _default_blocks(hidden.device, block_rows, block_items)


def _row_blocks(hidden, targets, block_rows):
    """Yield (start, n, hidden block, target block): full (block_rows, ...) blocks, the last one zero-padded."""
    n_rows = hidden.size(0)
    for start in range(0, n_rows, block_rows):
        n = min(block_rows, n_rows - start)
        yield start, n, _padded(hidden, start, n, block_rows), _padded(targets, start, n, block_rows)


class _ItemBlocks:
    """The item table in blocks of ``block_items`` rows, and the fixed-shape buffers the block scores go to.

    Matrix products run in ``dtype`` (the inputs' dtype for the loss, float32 or wider for the ranking). A
    buffer is reused from one block to the next, so a call allocates at most two widths of each: block_items and
    the last, narrower block's V % block_items.
    """

    def __init__(self, item_weight, bias, block_items, dtype):
        self.item_weight = item_weight
        self.bias = bias
        self.block_items = block_items
        self.dtype = dtype
        self._buffers = {}

    def __iter__(self):
        """(index, first item, width) of each item block."""
        n_items = self.item_weight.size(0)
        for index, first in enumerate(range(0, n_items, self.block_items)):
            yield index, first, min(self.block_items, n_items - first)

    def __len__(self):
        return -(-self.item_weight.size(0) // self.block_items)

    def weight(self, first, width):
        return self.item_weight[first:first + width].to(self.dtype)

    def buffer(self, name, rows, width, dtype):
        key = (name, width, dtype)
        buf = self._buffers.get(key)
        if buf is None or buf.size(0) != rows:
            buf = self._buffers[key] = torch.empty((rows, width), dtype=dtype, device=self.item_weight.device)
        return buf

    def scores(self, h, first, width, at_least_float32=False):
        """(rows, width) ``h @ W[first:first+width].T + b[first:first+width]`` in a reused buffer (overwritten by
        the next call); with ``at_least_float32`` a low-precision result is converted to float32."""
        out = self.buffer("scores", h.size(0), width, self.dtype)
        weight = self.weight(first, width)
        if self.bias is None:
            torch.mm(h, weight.t(), out=out)
        else:
            torch.addmm(self.bias[first:first + width].to(self.dtype), h, weight.t(), out=out)
        if not at_least_float32 or out.dtype in (torch.float32, torch.float64):
            return out
        return self.buffer("scores_float", h.size(0), width, torch.float32).copy_(out)


def _accumulate(acc, product, a, b):
    """acc += product(a, b) (torch.mm or torch.mv), in acc's dtype when a and b have a lower precision."""
    if acc.dtype == a.dtype:
        (acc.addmm_ if product is torch.mm else acc.addmv_)(a, b)
    else:
        acc.add_(product(a, b))


def _product_dtype(dtype):
    """The dtype of the block matrix products for inputs of ``dtype``: their own, except float16, whose range
    cannot hold the probabilities of a softmax over many items (about 1 / V), which run in float32."""
    return torch.float32 if dtype == torch.float16 else dtype


def _padded(values, start, n, rows):
    """values[start:start + n] zero-padded to ``rows`` rows (a view when no padding is needed)."""
    if n == rows:
        return values[start:start + n]
    out = values.new_zeros((rows,) + tuple(values.shape[1:]))
    out[:n] = values[start:start + n]
    return out


class _ItemCrossEntropy(torch.autograd.Function):
    """Forward: per row block and item block, the block's logsumexp (read off a fused log-softmax of the block's
    scores); the row's logsumexp is the logsumexp of its blocks'. Backward: per block, the block softmax times
    exp(block logsumexp - row logsumexp) is the full softmax; that per-row factor and the upstream gradient scale
    the small (rows, d) operands instead of the (rows, items) block."""

    @staticmethod
    def forward(ctx, hidden, item_weight, bias, targets, block_rows, block_items, reduction):
        acc = torch.promote_types(hidden.dtype, torch.float32)
        blocks = _ItemBlocks(item_weight, bias, block_items, _product_dtype(hidden.dtype))
        n_rows = hidden.size(0)
        block_lse = torch.empty((n_rows, len(blocks)), dtype=acc, device=hidden.device)
        row_loss = torch.empty((n_rows,), dtype=acc, device=hidden.device)
        for start, n, h, t in _row_blocks(hidden, targets, block_rows):
            lse = torch.empty((block_rows, len(blocks)), dtype=acc, device=hidden.device)
            for index, first, width in blocks:
                scores = blocks.scores(h.to(blocks.dtype), first, width, at_least_float32=True)
                log_probs = torch.log_softmax(scores, 1, out=blocks.buffer("log_probs", block_rows, width, acc))
                # log_prob = score - logsumexp, read at the row's best item: |log_prob| <= log(width) there
                top, where = scores.max(dim=1, keepdim=True)
                lse[:, index] = (top - log_probs.gather(1, where)).squeeze(1)
            block_lse[start:start + n] = lse[:n]
            row_loss[start:start + n] = (lse.logsumexp(dim=1) - target_scores(h, t, item_weight, bias))[:n]
        ctx.save_for_backward(hidden, item_weight, bias, targets, block_lse)
        ctx.blocks = (block_rows, block_items)
        ctx.reduction = reduction
        if reduction == "none":
            return row_loss.to(hidden.dtype)
        total = row_loss.sum()
        return (total / n_rows if reduction == "mean" else total).to(hidden.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        hidden, item_weight, bias, targets, block_lse = ctx.saved_tensors
        block_rows, block_items = ctx.blocks
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and bias is not None
        n_rows, acc, device = hidden.size(0), block_lse.dtype, hidden.device
        dtype = _product_dtype(hidden.dtype)
        grad_output = grad_output.to(acc)
        if ctx.reduction == "mean":
            grad_output = grad_output / n_rows
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(item_weight.shape, dtype=acc, device=device) if need_w else None
        grad_b = torch.zeros((item_weight.size(0),), dtype=acc, device=device) if need_b else None
        blocks = _ItemBlocks(item_weight, bias, block_items, dtype)
        for start, n, h, t in _row_blocks(hidden, targets, block_rows):
            # g_r = d total / d loss_r; zero on the padding rows, so they contribute nothing below
            if ctx.reduction == "none":
                g = _padded(grad_output, start, n, block_rows)
            else:
                g = torch.zeros((block_rows,), dtype=acc, device=device)
                g[:n] = grad_output
            lse = _padded(block_lse, start, n, block_rows)
            # softmax over all items = block softmax * exp(block logsumexp - row logsumexp)
            factors = torch.exp(lse - lse.logsumexp(dim=1, keepdim=True)).mul_(g.unsqueeze(1))
            acc_h = torch.zeros((block_rows, hidden.size(1)), dtype=acc, device=device) if need_h else None
            h_acc, h = h.to(acc), h.to(dtype)
            for index, first, width in blocks:
                scores = blocks.scores(h, first, width)
                probs = torch.softmax(scores, 1, out=blocks.buffer("probs", block_rows, width, dtype))
                factor = factors[:, index]
                if need_h:
                    acc_h.addcmul_(factor.unsqueeze(1), torch.mm(probs, blocks.weight(first, width)))
                if need_w:
                    scaled_h = (h_acc * factor.unsqueeze(1)).to(dtype)
                    _accumulate(grad_w[first:first + width], torch.mm, probs.t(), scaled_h)
                if need_b:
                    _accumulate(grad_b[first:first + width], torch.mv, probs.t(), factor.to(dtype))
            # minus the one-hot of the target: d loss_r / d score_{r, t_r} -= g_r
            if need_h:
                acc_h.sub_(g.unsqueeze(1) * item_weight.index_select(0, t).to(acc))
                grad_h[start:start + n] = acc_h[:n]
            if need_w:
                grad_w.index_add_(0, t, g.unsqueeze(1) * h_acc, alpha=-1)
            if need_b:
                grad_b.index_add_(0, t, g, alpha=-1)
        grad_w = None if grad_w is None else grad_w.to(item_weight.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None


def item_cross_entropy(
    hidden: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    *,
    block_rows: Optional[int] = None,
    block_items: Optional[int] = None,
    reduction: str = "mean",
    kernel: str = "blocked",
    precision: str = "tf32x3",
    valid_rows: Optional[torch.Tensor] = None,
    expected_rows: Optional[int] = None,
    check_targets: bool = True,
) -> torch.Tensor:
    """Exact ``F.cross_entropy(hidden @ item_weight.T + bias, targets, reduction=reduction)`` without the
    (N, V) logits.

    Args:
        hidden: (N, d) floating-point rows (float32, float64, bfloat16 or float16).
        item_weight: (V, d) item table, same dtype and device as ``hidden``.
        targets: (N,) long indices in [0, V).
        bias: optional (V,) per-item bias, same dtype.
        block_rows: rows per block; the last block is padded to this size (padding masked out of the loss).
            None: ``DEFAULT_BLOCK_ROWS`` of the device type (1024 on CPU and CUDA).
        block_items: items per block of the streaming logsumexp. None: ``DEFAULT_BLOCK_ITEMS`` of the device
            type (8192 on CPU, 32768 on CUDA).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (the (N,) per-row losses).
        kernel: ``"blocked"`` (default: this module's blocks, any device and dtype), ``"fused"`` (the Triton
            kernels of :mod:`recbole_adaptssr.item_softmax_fused`: float32 on CUDA, no logit ever written to
            memory; ValueError where they cannot run) or ``"auto"`` (fused for float32 on CUDA when Triton is
            installed, else blocked).
            Block sizes apply to the blocked kernel only.
        precision: the fused kernels' matrix products: ``"tf32x3"`` (default: float32 accuracy from three TF32
            products), ``"ieee"`` (float32 on CUDA cores, slow), ``"tf32"`` (TF32, not float32-exact) or ``"bf16"``
            (bfloat16 operands, float32 accumulation); ignored by the blocked kernel.
        valid_rows: None (every row counts), or an integer tensor of one element on the inputs' device: only rows
            ``[0, valid_rows)`` count; the others are padding (their loss is 0, they get no gradient, and ``mean``
            divides by ``valid_rows``). The count is never read on the host: fixed-size buffers with a
            data-dependent number of rows need no synchronisation (the fused kernels skip the padding; the blocked
            kernel computes it and masks it out).
        expected_rows: the fused kernels split the item range for this many rows (default: N); pass the typical
            count when most of N is padding.
        check_targets: check that every target lies in [0, V) (one synchronisation on a GPU); False only for
            targets known to be in range (e.g. ids read from the sequences the model embeds).

    The logits of a block are computed in the inputs' dtype, as the direct computation does (float16 inputs in
    float32: float16 cannot hold probabilities of about 1 / V); the logsumexp, the loss and the gradient
    accumulators are float32 (float64 for float64 inputs); the loss and the gradients are returned in the inputs'
    dtype. The backward recomputes each block of logits; between forward and backward only one float per row and
    item block (its logsumexp) is kept. Double backward is not supported. On a GPU the target-range check
    synchronises once per call.

    Raises:
        ValueError: on mismatched shapes, dtypes or devices, targets outside [0, V), non-positive block sizes,
            an unknown reduction, or N == 0 (an empty batch has no defined mean loss; the caller should skip it,
            as it would for any other reduction).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {list(KERNELS)}, got {kernel!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    block_rows, block_items = _check_inputs(hidden, item_weight, targets, bias, block_rows, block_items, check_targets)
    if valid_rows is not None and (not isinstance(valid_rows, torch.Tensor) or valid_rows.numel() != 1
                                   or valid_rows.is_floating_point() or valid_rows.device != hidden.device):
        raise ValueError(f"valid_rows must be an integer tensor of one element on {hidden.device}, got {valid_rows!r}")
    if fused_applies(kernel, hidden):
        from recbole_adaptssr import item_softmax_fused

        return item_softmax_fused.fused_item_cross_entropy(hidden, item_weight, targets, bias, reduction=reduction,
                                                           precision=precision, valid_rows=valid_rows,
                                                           expected_rows=expected_rows)
    if valid_rows is None:
        return _ItemCrossEntropy.apply(hidden, item_weight, bias, targets, block_rows, block_items, reduction)
    valid = torch.arange(hidden.size(0), device=hidden.device) < valid_rows.reshape(())
    row_loss = torch.where(valid, _ItemCrossEntropy.apply(hidden, item_weight, bias, targets, block_rows,
                                                          block_items, "none"), 0.0)
    if reduction == "none":
        return row_loss
    return row_loss.sum() / (valid_rows.reshape(()).to(row_loss.dtype) if reduction == "mean" else 1)


def fused_applies(kernel: str, hidden: torch.Tensor) -> bool:
    """Whether ``item_cross_entropy(kernel=kernel)`` runs the fused kernels on ``hidden`` (``fused``; ``auto``: on
    CUDA devices where they can run, since Triton's CPU interpreter is for tests and far slower than the blocks)."""
    if kernel == "blocked":
        return False
    from recbole_adaptssr import item_softmax_fused

    return kernel == "fused" or (hidden.device.type == "cuda" and item_softmax_fused.fused_available(hidden))


@torch.no_grad()
def item_ranking_statistics(
    hidden: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    *,
    k: int = 10,
    block_rows: Optional[int] = None,
    block_items: Optional[int] = None,
) -> dict:
    """Rank of each row's target among all V items, and its top-1 accuracy, hit@k and NDCG@k, in blocks.

    Scores are ``hidden @ item_weight.T + bias`` computed in float32 (float64 for float64 inputs), whatever
    the inputs' dtype. The rank of row r is the number of OTHER items whose score is strictly greater than
    the target's: ties are resolved in the target's favour (an item scoring exactly as the target does not
    push it down), and the target's own column is never counted. The target's score is computed by a dot
    product, the others by block matrix products; an item whose score differs from the target's only by
    floating-point rounding may fall on either side. (``logits.argmax() == target`` counts a tie as a miss when
    a tied item has a lower index; here it is a hit.) Block sizes as in :func:`item_cross_entropy`.

    Returns a dict of tensors on the inputs' device: ``"rank"`` (N,) long (0 = first), ``"accuracy"``
    (rank == 0), ``f"hit@{k}"`` (rank < k) and ``f"ndcg@{k}"`` (1 / log2(rank + 2) when rank < k, else 0), the
    last three float32 means over the N rows. Raises ValueError as :func:`item_cross_entropy` does, and for
    k < 1.
    """
    k = _check_block("k", k)
    block_rows, block_items = _check_inputs(hidden, item_weight, targets, bias, block_rows, block_items)
    blocks = _ItemBlocks(item_weight, bias, block_items, torch.promote_types(hidden.dtype, torch.float32))
    rank = torch.empty((hidden.size(0),), dtype=torch.long, device=hidden.device)
    for start, n, h, t in _row_blocks(hidden, targets, block_rows):
        target_score = target_scores(h, t, item_weight, bias).to(blocks.dtype).unsqueeze(1)
        h = h.to(blocks.dtype)
        above = torch.zeros((block_rows,), dtype=torch.long, device=hidden.device)
        for _, first, width in blocks:
            scores = blocks.scores(h, first, width)
            above += (scores > target_score).sum(dim=1)
            # never count the target's own column (its block score may round above its dot-product score)
            local = t - first
            inside = (local >= 0) & (local < width)
            own = scores.gather(1, local.clamp(0, width - 1).unsqueeze(1)).squeeze(1) > target_score.squeeze(1)
            above -= (own & inside).long()
        rank[start:start + n] = above[:n]
    hit = rank < k
    ndcg = torch.where(hit, 1.0 / torch.log2(rank.to(torch.float32) + 2.0), torch.zeros((), device=rank.device))
    return {
        "rank": rank,
        "accuracy": (rank == 0).float().mean(),
        f"hit@{k}": hit.float().mean(),
        f"ndcg@{k}": ndcg.mean(),
    }

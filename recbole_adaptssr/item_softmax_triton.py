"""Triton kernels of the fused full-softmax item cross-entropy (see :mod:`recbole_adaptssr.item_softmax_fused`).

Imported only when those kernels are first used: this module needs Triton.
"""

import triton
import triton.language as tl


@triton.jit
def _tile(h, w_ptr, b_ptr, items, item_ok, dims, dim, stride_w, HAS_BIAS: tl.constexpr,
          PRECISION: tl.constexpr):
    """The (rows, items) logits of one tile, and the item tile itself."""
    w = tl.load(w_ptr + items[:, None] * stride_w + dims[None, :],
                mask=item_ok[:, None] & (dims[None, :] < dim), other=0.0)
    logits = tl.dot(h, tl.trans(w), input_precision=PRECISION)
    if HAS_BIAS:
        logits += tl.load(b_ptr + items, mask=item_ok, other=0.0)[None, :]
    return logits, w


@triton.jit
def _rows(h_ptr, stride_h, first_row, n_rows, dim, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = first_row + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    row_ok = rows < n_rows
    h = tl.load(h_ptr + rows[:, None] * stride_h + dims[None, :],
                mask=row_ok[:, None] & (dims[None, :] < dim), other=0.0)
    return rows, dims, row_ok, h


@triton.jit
def _item_range(split, items_per_split, n_items):
    """[start, end) of the items of one split of the item range."""
    start = split * items_per_split
    return start, tl.minimum(start + items_per_split, n_items)


@triton.jit
def lse_partials(h_ptr, w_ptr, b_ptr, max_ptr, sum_ptr, n_rows, n_items, dim, items_per_split,
                 stride_h, stride_w, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    split = tl.program_id(1)
    rows, dims, row_ok, h = _rows(h_ptr, stride_h, tl.program_id(0) * BLOCK_N, n_rows, dim, BLOCK_N, BLOCK_D)
    running_max = tl.full([BLOCK_N], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_N], tl.float32)
    start, end = _item_range(split, items_per_split, n_items)
    for first in range(start, end, BLOCK_V):
        items = first + tl.arange(0, BLOCK_V)
        item_ok = items < end
        logits, _ = _tile(h, w_ptr, b_ptr, items, item_ok, dims, dim, stride_w, HAS_BIAS, PRECISION)
        logits = tl.where(item_ok[None, :], logits, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(logits, 1))
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(logits - new_max[:, None]), 1)
        running_max = new_max
    tl.store(max_ptr + split * n_rows + rows, running_max, mask=row_ok)
    tl.store(sum_ptr + split * n_rows + rows, running_sum, mask=row_ok)


@triton.jit
def grad_hidden_partials(h_ptr, w_ptr, b_ptr, lse_ptr, g_ptr, out_ptr, n_rows, n_items, dim, items_per_split,
                         stride_h, stride_w, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    split = tl.program_id(1)
    rows, dims, row_ok, h = _rows(h_ptr, stride_h, tl.program_id(0) * BLOCK_N, n_rows, dim, BLOCK_N, BLOCK_D)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
    acc = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    start, end = _item_range(split, items_per_split, n_items)
    for first in range(start, end, BLOCK_V):
        items = first + tl.arange(0, BLOCK_V)
        item_ok = items < end
        logits, w = _tile(h, w_ptr, b_ptr, items, item_ok, dims, dim, stride_w, HAS_BIAS, PRECISION)
        p = tl.exp(logits - lse[:, None]) * g[:, None]
        p = tl.where(row_ok[:, None] & item_ok[None, :], p, 0.0)
        acc += tl.dot(p, w, input_precision=PRECISION)
    out = out_ptr + split * n_rows * dim + rows[:, None] * dim + dims[None, :]
    tl.store(out, acc, mask=row_ok[:, None] & (dims[None, :] < dim))


@triton.jit
def grad_items(h_ptr, w_ptr, b_ptr, lse_ptr, g_ptr, dw_ptr, db_ptr, n_rows, n_items, dim,
               stride_h, stride_w, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
               BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    """One block of items: its tile of the table stays in registers while every row block passes; the logits are
    computed transposed (items x rows), so ``p.T @ hidden`` takes them as they come out of the product."""
    items = tl.program_id(0) * BLOCK_V + tl.arange(0, BLOCK_V)
    item_ok = items < n_items
    dims = tl.arange(0, BLOCK_D)
    w = tl.load(w_ptr + items[:, None] * stride_w + dims[None, :],
                mask=item_ok[:, None] & (dims[None, :] < dim), other=0.0)
    if HAS_BIAS:
        b = tl.load(b_ptr + items, mask=item_ok, other=0.0)
    acc_w = tl.zeros([BLOCK_V, BLOCK_D], tl.float32)
    acc_b = tl.zeros([BLOCK_V], tl.float32)
    for first_row in range(0, n_rows, BLOCK_N):
        rows, dims, row_ok, h = _rows(h_ptr, stride_h, first_row, n_rows, dim, BLOCK_N, BLOCK_D)
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
        g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
        logits_t = tl.dot(w, tl.trans(h), input_precision=PRECISION)
        if HAS_BIAS:
            logits_t += b[:, None]
        p_t = tl.exp(logits_t - lse[None, :]) * g[None, :]
        p_t = tl.where(item_ok[:, None] & row_ok[None, :], p_t, 0.0)
        acc_w += tl.dot(p_t, h, input_precision=PRECISION)
        acc_b += tl.sum(p_t, 1)
    tl.store(dw_ptr + items[:, None] * dim + dims[None, :], acc_w, mask=item_ok[:, None] & (dims[None, :] < dim))
    if HAS_BIAS:
        tl.store(db_ptr + items, acc_b, mask=item_ok)

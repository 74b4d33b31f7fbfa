"""Triton kernels of the fused full-softmax item cross-entropy (see :mod:`recbole_adaptssr.item_softmax_fused`).

Every kernel reads the number of valid rows from device memory (``count_ptr``): rows from there up to the buffers'
``capacity`` are padding, which costs no arithmetic (a row block past the count runs no loop iteration) and
contributes nothing; so a caller with a data-dependent number of rows can pass fixed-size buffers and the count
as a tensor, with no host synchronisation.

Imported only when those kernels are first used: this module needs Triton.
"""

import triton
import triton.language as tl


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr):
    """a @ b accumulated in float32: bfloat16 operands for ``bf16``, else ``tl.dot``'s float32 input precisions."""
    if PRECISION == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    else:
        return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _tile(h, w_ptr, b_ptr, items, item_ok, dims, dim, stride_w, HAS_BIAS: tl.constexpr,
          PRECISION: tl.constexpr):
    """The (rows, items) logits of one tile, and the item tile itself."""
    w = tl.load(w_ptr + items[:, None] * stride_w + dims[None, :],
                mask=item_ok[:, None] & (dims[None, :] < dim), other=0.0)
    logits = _dot(h, tl.trans(w), PRECISION)
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
def _item_range(split, items_per_split, n_items, active):
    """[start, end) of the items of one split of the item range (empty for an inactive row block)."""
    start = split * items_per_split
    end = tl.minimum(start + items_per_split, n_items)
    return start, tl.where(active, end, start)


@triton.jit
def lse_partials(h_ptr, w_ptr, b_ptr, max_ptr, sum_ptr, count_ptr, capacity, n_items, dim, items_per_split,
                 stride_h, stride_w, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    split = tl.program_id(1)
    n_rows = tl.load(count_ptr)
    first_row = tl.program_id(0) * BLOCK_N
    rows, dims, row_ok, h = _rows(h_ptr, stride_h, first_row, n_rows, dim, BLOCK_N, BLOCK_D)
    running_max = tl.full([BLOCK_N], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_N], tl.float32)
    start, end = _item_range(split, items_per_split, n_items, first_row < n_rows)
    for first in range(start, end, BLOCK_V):
        items = first + tl.arange(0, BLOCK_V)
        item_ok = items < end
        logits, _ = _tile(h, w_ptr, b_ptr, items, item_ok, dims, dim, stride_w, HAS_BIAS, PRECISION)
        logits = tl.where(item_ok[None, :], logits, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(logits, 1))
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(logits - new_max[:, None]), 1)
        running_max = new_max
    in_buffer = rows < capacity
    tl.store(max_ptr + split * capacity + rows, running_max, mask=in_buffer)
    tl.store(sum_ptr + split * capacity + rows, running_sum, mask=in_buffer)


@triton.jit
def grad_hidden_partials(h_ptr, w_ptr, b_ptr, lse_ptr, g_ptr, out_ptr, count_ptr, capacity, n_items, dim,
                         items_per_split, stride_h, stride_w, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    """Per (row block, item split): sum over the split's items of softmax * g times the item row (the one-hot
    term, one item row per row, is subtracted once by the caller: fewer roundings than inside the sum)."""
    split = tl.program_id(1)
    n_rows = tl.load(count_ptr)
    first_row = tl.program_id(0) * BLOCK_N
    rows, dims, row_ok, h = _rows(h_ptr, stride_h, first_row, n_rows, dim, BLOCK_N, BLOCK_D)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
    acc = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    start, end = _item_range(split, items_per_split, n_items, first_row < n_rows)
    for first in range(start, end, BLOCK_V):
        items = first + tl.arange(0, BLOCK_V)
        item_ok = items < end
        logits, w = _tile(h, w_ptr, b_ptr, items, item_ok, dims, dim, stride_w, HAS_BIAS, PRECISION)
        p = tl.exp(logits - lse[:, None]) * g[:, None]
        p = tl.where(row_ok[:, None] & item_ok[None, :], p, 0.0)
        acc += _dot(p, w, PRECISION)
    out = out_ptr + split * capacity * dim + rows[:, None] * dim + dims[None, :]
    tl.store(out, acc, mask=(rows[:, None] < capacity) & (dims[None, :] < dim))


@triton.jit
def grad_items(h_ptr, w_ptr, b_ptr, lse_ptr, g_ptr, dw_ptr, db_ptr, count_ptr, n_items, dim,
               stride_h, stride_w, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
               BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    """One block of items: its tile of the table stays in registers while every valid row block passes; the logits
    are computed transposed (items x rows), so ``p.T @ hidden`` takes them as they come out of the product."""
    n_rows = tl.load(count_ptr)
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
        logits_t = _dot(w, tl.trans(h), PRECISION)
        if HAS_BIAS:
            logits_t += b[:, None]
        p_t = tl.exp(logits_t - lse[None, :]) * g[None, :]
        p_t = tl.where(item_ok[:, None] & row_ok[None, :], p_t, 0.0)
        acc_w += _dot(p_t, h, PRECISION)
        acc_b += tl.sum(p_t, 1)
    tl.store(dw_ptr + items[:, None] * dim + dims[None, :], acc_w, mask=item_ok[:, None] & (dims[None, :] < dim))
    if HAS_BIAS:
        tl.store(db_ptr + items, acc_b, mask=item_ok)

"""Triton kernel of :class:`recbole_adaptssr.row_sparse_adam.RowSparseAdam` (imported when first used: needs Triton).

One program per block of rows reads the block's gradient; only rows with a nonzero (or NaN) gradient element read
and write their parameter and moments, so the memory traffic beyond one pass over the gradient is proportional to
the rows a batch touched.
"""

import triton
import triton.language as tl


@triton.jit
def row_sparse_adam(p_ptr, g_ptr, m_ptr, v_ptr, n_rows, dim, lr_over_bias1, bias2_sqrt, beta1, beta2, eps,
                    weight_decay, HAS_WEIGHT_DECAY: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    dims = tl.arange(0, BLOCK_D)
    inside = (rows[:, None] < n_rows) & (dims[None, :] < dim)
    offsets = rows[:, None] * dim + dims[None, :]
    g = tl.load(g_ptr + offsets, mask=inside, other=0.0)
    touched = tl.sum((g != 0.0).to(tl.int32), 1) > 0  # NaN != 0: a NaN gradient updates (and poisons) its row
    mask = inside & touched[:, None]
    p = tl.load(p_ptr + offsets, mask=mask, other=0.0)
    m = tl.load(m_ptr + offsets, mask=mask, other=0.0)
    v = tl.load(v_ptr + offsets, mask=mask, other=0.0)
    if HAS_WEIGHT_DECAY:
        g = g + weight_decay * p
    m = m + (1.0 - beta1) * (g - m)  # torch's lerp_(g, 1 - beta1) for a weight below 0.5
    v = v * beta2 + (1.0 - beta2) * g * g
    p = p - lr_over_bias1 * (m / (tl.sqrt(v) / bias2_sqrt + eps))
    tl.store(m_ptr + offsets, m, mask=mask)
    tl.store(v_ptr + offsets, v, mask=mask)
    tl.store(p_ptr + offsets, p, mask=mask)

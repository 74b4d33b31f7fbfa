"""The forward of RecBole's ``TransformerEncoder`` in fewer, fused kernels (setting ``encoder_kernel``).

RecBole's layers (``recbole.model.layers``) compute attention as separate kernels over the (B, heads, L, L) score
tensor (product, scaling, mask, softmax, dropout, product: each a pass over memory, and as many again backwards),
the three projections as three matrix products, and GELU as five elementwise operations (with their own
backward kernels). :func:`fused_encoder_forward` runs the same layers, reading the same parameters (the state dict
does not change), as:

* one matrix product for the query, key and value projections (their weights concatenated);
* ``torch.nn.functional.scaled_dot_product_attention`` (a fused attention kernel on CUDA: scores, mask,
  softmax, dropout and the product in one pass, never writing the (L, L) probabilities);
* ``torch.nn.functional.gelu`` (one kernel forward, one backward) for RecBole's erf GELU;
* the output projection, dropout, residual and LayerNorm as in RecBole's layers, except that the column sums of
  the backward (the gradients of every bias and of the LayerNorm weights, sums over all B x L positions) are
  matrix-vector products (``ones @ g``) instead of PyTorch's reduction kernels, which are slow for 64 columns
  and 51,200 rows (a fifth of a ranking step's GPU time at the TTL scale, measured on an H100).

Without dropout (evaluation, or dropout 0) it computes RecBole's function up to float32 rounding
(``tests/test_fused_encoder.py``). With dropout it is the same model with other random draws: the fused attention
draws its dropout mask from the default generator in its own way, so a training run's numbers differ from the
eager layers' run by the random stream, not by the distribution.

``encoder_kernel``: ``eager`` (RecBole's layers), ``fused`` (this module, any device), ``auto`` (the default: fused on
CUDA, eager elsewhere, so CPU runs keep RecBole's exact arithmetic and random stream).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.layers import FeedForward

ENCODER_KERNELS = ("auto", "eager", "fused")
#: the additive mask of RecBole's layers (0 where attention is allowed)
MASKED_SCORE = -10000.0


def check_encoder_kernel(value, key: str = "encoder_kernel") -> str:
    if value not in ENCODER_KERNELS:
        raise ValueError(f"{key} must be one of {list(ENCODER_KERNELS)}, got {value!r}")
    return value


def use_fused(kernel: str, x: torch.Tensor) -> bool:
    """Whether ``kernel`` (an :data:`ENCODER_KERNELS` value) runs the fused layers on ``x``'s device."""
    return kernel == "fused" or (kernel == "auto" and x.device.type == "cuda")


def _column_sums(g: torch.Tensor) -> torch.Tensor:
    """Sum of ``g`` (..., n) over all but its last dimension, as one matrix-vector product."""
    rows = g.reshape(-1, g.size(-1))
    return (rows.new_ones(1, rows.size(0)) @ rows).squeeze(0)


class _Linear(torch.autograd.Function):
    """``F.linear(x, weight, bias)`` (autocast applies as to F.linear) whose bias gradient is :func:`_column_sums`."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.linear(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        dtype = grad.dtype  # bfloat16 under autocast: the products in the forward's dtype, as autocast's backward
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ weight.to(dtype)).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = (grad.reshape(-1, grad.size(-1)).t() @ x.reshape(-1, x.size(-1)).to(dtype)).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_b = _column_sums(grad).to(weight.dtype)
        return grad_x, grad_w, grad_b


class _LayerNorm(torch.autograd.Function):
    """``F.layer_norm`` over the last dimension in float32 or wider, whose weight and bias gradients are column sums
    by :func:`_column_sums` (the input's gradient is PyTorch's own kernel)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        out, mean, rstd = torch.native_layer_norm(x, (x.size(-1),), weight, bias, eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight, mean, rstd = ctx.saved_tensors
        grad = grad.to(x.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.native_layer_norm_backward(grad, x, [x.size(-1)], mean, rstd, weight, None,
                                                               [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = _column_sums(grad * ((x - mean) * rstd))
        if ctx.needs_input_grad[2]:
            grad_b = _column_sums(grad)
        return grad_x, grad_w, grad_b, None


def layer_norm(x: torch.Tensor, norm) -> torch.Tensor:
    """The LayerNorm module ``norm`` (over the last dimension) applied to ``x``, as :class:`_LayerNorm`."""
    return _LayerNorm.apply(x, norm.weight, norm.bias, norm.eps)


def _linear(x: torch.Tensor, module) -> torch.Tensor:
    return _Linear.apply(x, module.weight, module.bias)


def _attention(module, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """RecBole's ``MultiHeadAttention`` forward (``allowed``: bool, broadcastable to (B, heads, L, L))."""
    batch, length, dim = x.shape
    heads, head_dim = module.num_attention_heads, module.attention_head_size
    weight = torch.cat((module.query.weight, module.key.weight, module.value.weight))
    bias = torch.cat((module.query.bias, module.key.bias, module.value.bias))
    qkv = _Linear.apply(x, weight, bias).view(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)
    # the additive mask in the products' dtype (bfloat16 under autocast): RecBole's -10000, not -inf, so a row with
    # no allowed key averages every key as RecBole's layers do
    mask = torch.where(allowed, 0.0, MASKED_SCORE).to(query.dtype)
    p = module.attn_dropout.p if module.training else 0.0
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=p)
    context = context.transpose(1, 2).reshape(batch, length, dim)
    out = F.dropout(_linear(context, module.dense), module.out_dropout.p, module.training)
    return layer_norm(out + x, module.LayerNorm)


def _activation(module: FeedForward, x: torch.Tensor) -> torch.Tensor:
    if getattr(module.intermediate_act_fn, "__func__", None) is FeedForward.gelu:
        return F.gelu(x)  # RecBole's x * 0.5 * (1 + erf(x / sqrt(2))), in one kernel
    return module.intermediate_act_fn(x)


def _feed_forward(module: FeedForward, x: torch.Tensor) -> torch.Tensor:
    hidden = _activation(module, _linear(x, module.dense_1))
    hidden = F.dropout(_linear(hidden, module.dense_2), module.dropout.p, module.training)
    return layer_norm(hidden + x, module.LayerNorm)


def fused_encoder_forward(encoder, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The last layer's output of RecBole's ``TransformerEncoder`` ``encoder`` on ``x`` (B, L, d).

    ``allowed``: bool, True where a query position may attend to a key position, broadcastable to
    (B, heads, L, L): ``valid[:, None, None, :]`` for the bidirectional mask, its lower triangle for SASRec's."""
    for layer in encoder.layer:
        x = _feed_forward(layer.feed_forward, _attention(layer.multi_head_attention, x, allowed))
    return x

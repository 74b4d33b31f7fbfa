"""The arithmetic of a training step: the ``precision`` setting (``<stage>_precision`` for one pre-training stage,
``finetune_precision`` for fine-tuning).

* ``float32`` (default): float32 everywhere; the fused item softmax's products in ``tf32x3`` (float32 accuracy).
* ``tf32``: float32 tensors, matrix products on the tensor cores in TF32 (10-bit mantissa inputs, float32
  accumulation; CUDA, a no-op elsewhere); the item softmax's products in ``tf32``.
* ``bf16``: the Transformer layers of the user model (``transformer``, ``SASRec``, ``BERT4Rec``) under
  ``torch.autocast`` to bfloat16: their matrix products and attention in bfloat16, softmax and LayerNorm in
  float32 (autocast's lists); the hidden states they return are float32, and what follows them (embeddings before,
  pooling, the pretext losses and heads after) runs in float32, so similarities and margins of the ranking loss
  keep float32 resolution; the item softmax takes bfloat16 operands with float32 accumulation and a float32
  logsumexp. Parameters, gradients and the optimizer stay float32 (the master weights). No loss scaling is needed
  (bfloat16 has float32's exponent range). Other backbones (GRU4Rec, NextItNet) run in float32.

Only the training step changes: validation and evaluation run in float32. ``item_softmax_precision``, when set,
overrides the item softmax's products. RecBole's ``enable_amp`` (float16 with a gradient scaler) is separate and
takes precedence where it is on.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

PRECISIONS = ("float32", "tf32", "bf16")
#: the fused item softmax's products under each precision (``item_softmax_precision`` unset)
ITEM_SOFTMAX_PRECISION = {"float32": "tf32x3", "tf32": "tf32", "bf16": "bf16"}


def check_precision(value, key: str = "precision") -> str:
    if value not in PRECISIONS:
        raise ValueError(f"{key} must be one of {list(PRECISIONS)}, got {value!r}")
    return value


def setting(settings) -> str:
    """The checked ``precision`` of a :class:`~recbole_adaptssr.pretext.base.StageSettings` view (float32 if unset)."""
    return check_precision(settings.get("precision", "float32"), settings.key("precision"))


#: set while a training step runs with ``precision: bf16``: the encoders' layers autocast to bfloat16
_BF16_LAYERS = contextvars.ContextVar("bf16_layers", default=False)


def layers_autocast(device):
    """The context an encoder runs its Transformer layers in: bfloat16 autocast inside a ``bf16`` training step
    (:func:`training_precision`), else nothing."""
    if not _BF16_LAYERS.get():
        return contextlib.nullcontext()
    # no autocast cache: the step may be captured into a CUDA graph, whose casts must be part of it
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)


@contextlib.contextmanager
def training_precision(device, precision: str):
    """The arithmetic of ``precision`` for the code run inside (a training step's forward; the backward follows
    the forward's dtypes)."""
    device = torch.device(device)
    if precision == "bf16":
        token = _BF16_LAYERS.set(True)
        try:
            yield
        finally:
            _BF16_LAYERS.reset(token)
    elif precision == "tf32" and device.type == "cuda":
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    else:
        yield

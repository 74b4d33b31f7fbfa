"""``user_model: SASRec``: the layers of RecBole's ``SASRec`` (Kang and McAuley, ICDM 2018) as a user model.

As ``recbole.model.sequential_recommender.sasrec.SASRec``: item + learned position embeddings, LayerNorm, dropout,
RecBole's ``TransformerEncoder`` with a left-to-right (causal) attention mask (RecBole's
``SequentialRecommender.get_attention_mask``: position i attends to the valid positions j <= i), normal(0,
``initializer_range``) initialisation. RecBole's defaults are the general settings' (2 layers, 2 heads,
inner size 256, gelu, layer_norm_eps 1e-12, initializer_range 0.02); ``sasrec_<key>`` overrides one for this
backbone only.

Deviations from RecBole's SASRec (docs/backbones.md): the item table has a mask-token row (``n_items``); the
readout is ``user_model_pooling`` (attention by default; ``last`` is RecBole's ``gather_indexes(output,
item_seq_len - 1)``); dropout is the pipeline's per-stage ``hidden_dropout_prob`` / ``attn_dropout_prob``
(RecBole's SASRec defaults to 0.5 / 0.5).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from recbole.model.layers import TransformerEncoder
from torch import nn

from recbole_adaptssr.encoder.base import SequenceEncoder
from recbole_adaptssr.encoder.fused_transformer import (check_encoder_kernel, fused_encoder_forward, layer_norm,
                                                       use_fused)
from recbole_adaptssr.precision import layers_autocast
from recbole_adaptssr.encoder.pooling import build_pooling
from recbole_adaptssr.encoder.user_model import init_transformer_weights


class SelfAttentionEncoder(SequenceEncoder):
    """RecBole's SASRec / BERT4Rec layers; ``bidirectional`` selects the attention mask."""

    positive_int_keys = ("n_layers", "n_heads", "inner_size")

    bidirectional: ClassVar[bool] = False

    def __init__(self, n_items: int, max_seq_length: int, hidden_size: int = 64, n_layers: int = 2,
                 n_heads: int = 2, inner_size: int = 256, hidden_dropout_prob: float = 0.1,
                 attn_dropout_prob: float = 0.1, hidden_act: str = "gelu", layer_norm_eps: float = 1e-12,
                 initializer_range: float = 0.02, pooling: str = "attention", encoder_kernel: str = "eager"):
        super().__init__(n_items, max_seq_length, pooling)
        self.encoder_kernel = check_encoder_kernel(encoder_kernel)
        self.initializer_range = initializer_range
        self.item_embedding = nn.Embedding(n_items + 1, hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_seq_length, hidden_size)
        self.trm_encoder = TransformerEncoder(
            n_layers=n_layers, n_heads=n_heads, hidden_size=hidden_size, inner_size=inner_size,
            hidden_dropout_prob=hidden_dropout_prob, attn_dropout_prob=attn_dropout_prob, hidden_act=hidden_act,
            layer_norm_eps=layer_norm_eps,
        )
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout_prob)
        self.apply(self._init_weights)
        self.pooling = build_pooling(pooling, hidden_size, initializer_range)

    def _init_weights(self, module: nn.Module) -> None:
        """RecBole's SASRec/BERT4Rec initialisation."""
        init_transformer_weights(module, self.initializer_range)

    @classmethod
    def check_settings(cls, config) -> None:
        super().check_settings(config)
        settings = cls.settings(config)
        if config["hidden_size"] % settings["n_heads"]:
            raise ValueError(f"hidden_size must be a multiple of {settings.key('n_heads')} (each attention head gets "
                             f"hidden_size / n_heads dimensions), got hidden_size={config['hidden_size']} and "
                             f"{settings.key('n_heads')}={settings['n_heads']}")
        check_encoder_kernel(settings.get("encoder_kernel", "eager"), settings.key("encoder_kernel"))

    @classmethod
    def from_config(cls, config, n_items: int, max_seq_length: int) -> "SelfAttentionEncoder":
        settings = cls.settings(config)
        return cls(
            n_items=n_items, max_seq_length=max_seq_length, hidden_size=config["hidden_size"],
            n_layers=settings["n_layers"], n_heads=settings["n_heads"], inner_size=settings["inner_size"],
            hidden_dropout_prob=settings["hidden_dropout_prob"], attn_dropout_prob=settings["attn_dropout_prob"],
            hidden_act=settings["hidden_act"], layer_norm_eps=settings["layer_norm_eps"],
            initializer_range=settings["initializer_range"], pooling=config["user_model_pooling"] or "attention",
            encoder_kernel=settings.get("encoder_kernel", "eager"),
        )

    def allowed(self, valid: torch.Tensor) -> torch.Tensor:
        """Where attention is allowed, (B, 1, 1, L) or, causal, (B, 1, L, L): valid keys (at or before the query)."""
        allowed = valid[:, None, None, :]
        if not self.bidirectional:
            allowed = torch.tril(allowed.expand(-1, -1, valid.size(1), -1))
        return allowed

    def attention_mask(self, valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """RecBole's extended attention mask (B, 1, L, L): 0 where attention is allowed, -10000 elsewhere."""
        return torch.where(self.allowed(valid), 0.0, -10000.0).to(dtype)

    def encode(self, item_seq: torch.Tensor) -> tuple:
        self.check_length(item_seq)
        valid = item_seq != 0
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        x = self.item_embedding(item_seq) + self.position_embedding(positions).unsqueeze(0)
        fused = use_fused(self.encoder_kernel, x)  # encoder_kernel: the same layers in fused kernels
        x = self.dropout(layer_norm(x, self.LayerNorm) if fused else self.LayerNorm(x))
        with layers_autocast(x.device):  # precision: bf16 (float32 otherwise)
            if fused:
                hidden = fused_encoder_forward(self.trm_encoder, x, self.allowed(valid))
            else:
                hidden = self.trm_encoder(x, self.attention_mask(valid, x.dtype), output_all_encoded_layers=True)[-1]
        return hidden.to(x.dtype), valid


class SASRec(SelfAttentionEncoder):
    """SASRec's self-attention layers with the causal mask."""

    name = "SASRec"
    bidirectional = False

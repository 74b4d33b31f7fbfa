"""The AdaptSSR user model M (paper Eq. 2-4): item + position embeddings, a Transformer encoder and
attention pooling with one learnable query.

Deviation worth knowing: as RecBole's SASRec/BERT4Rec (and BERT), the summed input embeddings go through a
LayerNorm and dropout before the encoder; the paper does not say either way. Dropout (``hidden_dropout_prob``
on every sub-layer output, ``attn_dropout_prob`` on attention probabilities) is the only source of the
implicit augmentation.
"""

from __future__ import annotations

import torch
from recbole.model.layers import TransformerEncoder
from torch import nn

from recbole_adaptssr.encoder.fused_transformer import (check_encoder_kernel, fused_encoder_forward, layer_norm,
                                                       use_fused)
from recbole_adaptssr.precision import layers_autocast


class AttentionPooling(nn.Module):
    """u = sum_i alpha_i h_i with alpha = softmax(q . h_i) over non-padding positions (Eq. 3-4)."""

    def __init__(self, hidden_size: int, initializer_range: float = 0.02):
        super().__init__()
        self.query = nn.Parameter(torch.randn(hidden_size) * initializer_range)

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``hidden`` (B, L, d), ``valid`` (B, L) bool -> (B, d). Padding gets exactly zero weight."""
        scores = hidden @ self.query
        scores = scores.masked_fill(~valid, float("-inf"))
        alpha = torch.softmax(scores, dim=-1)
        return torch.einsum("bl,bld->bd", alpha, hidden)


def init_transformer_weights(module: nn.Module, std: float) -> None:
    """BERT's (and RecBole's SASRec/BERT4Rec) initialisation of one module: normal(0, ``std``) weights for linear
    and embedding layers, zero biases, LayerNorm at identity. Apply with ``model.apply``."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()


class UserModel(nn.Module):
    """Behaviour sequence -> hidden states H (Eq. 2) -> user representation u (Eq. 3-4).

    Item id 0 is padding. The embedding table has ``n_items + 1`` rows: row ``n_items`` is the learned mask
    token used by the mask augmentation and by MLM (embedding-level masking, as the authors' release).
    """

    def __init__(
        self,
        n_items: int,
        max_seq_length: int,
        hidden_size: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        inner_size: int = 256,
        hidden_dropout_prob: float = 0.1,
        attn_dropout_prob: float = 0.1,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        encoder_kernel: str = "eager",
    ):
        super().__init__()
        self.encoder_kernel = check_encoder_kernel(encoder_kernel)
        self.n_items = n_items
        self.mask_token_id = n_items
        self.max_seq_length = max_seq_length
        self.initializer_range = initializer_range
        self.item_embedding = nn.Embedding(n_items + 1, hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_seq_length, hidden_size)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout_prob)
        self.encoder = TransformerEncoder(
            n_layers=n_layers,
            n_heads=n_heads,
            hidden_size=hidden_size,
            inner_size=inner_size,
            hidden_dropout_prob=hidden_dropout_prob,
            attn_dropout_prob=attn_dropout_prob,
            hidden_act=hidden_act,
            layer_norm_eps=layer_norm_eps,
        )
        self.pooling = AttentionPooling(hidden_size, initializer_range)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        init_transformer_weights(module, self.initializer_range)

    def set_dropout(self, hidden_dropout_prob: float, attn_dropout_prob: float) -> None:
        """Set the dropout of every sub-layer output and of the attention probabilities (per-stage settings)."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Dropout):
                module.p = float(attn_dropout_prob if name.endswith("attn_dropout") else hidden_dropout_prob)

    def encode(self, item_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) item ids -> hidden states (B, L, d) and the (B, L) bool mask of valid positions."""
        if item_seq.size(1) > self.max_seq_length:
            raise ValueError(
                f"sequence length {item_seq.size(1)} exceeds MAX_ITEM_LIST_LENGTH={self.max_seq_length}"
            )
        valid = item_seq != 0
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        x = self.item_embedding(item_seq) + self.position_embedding(positions).unsqueeze(0)
        fused = use_fused(self.encoder_kernel, x)  # encoder_kernel: the same layers in fused kernels
        x = self.dropout(layer_norm(x, self.layer_norm) if fused else self.layer_norm(x))
        with layers_autocast(x.device):  # precision: bf16 (float32 otherwise)
            if fused:
                hidden = fused_encoder_forward(self.encoder, x, valid[:, None, None, :])
            else:
                attention_mask = torch.where(valid[:, None, None, :], 0.0, -10000.0).to(x.dtype)
                hidden = self.encoder(x, attention_mask, output_all_encoded_layers=False)[-1]
        return hidden.to(x.dtype), valid

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        """(B, L) item ids -> (B, d) user representations."""
        hidden, valid = self.encode(item_seq)
        return self.pooling(hidden, valid)

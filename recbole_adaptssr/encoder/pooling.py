"""Readouts from hidden states (B, L, d) to one user representation (B, d), over the valid (non-padding) positions.

* ``attention``: Eq. 3-4 of the paper, one learnable query (:class:`~recbole_adaptssr.encoder.user_model.AttentionPooling`);
* ``last``: the hidden state of the last valid position, RecBole's readout for its sequential recommenders
  (``gather_indexes(output, item_seq_len - 1)``); for a causal backbone (SASRec, GRU4Rec, NextItNet) the only
  position that has seen the whole sequence;
* ``mean``: the average of the valid positions' hidden states.

Padding positions never contribute, wherever they are: ``last`` takes the highest valid index rather than
``length - 1``, so it does not depend on the left-aligned layout either.
"""

from __future__ import annotations

import torch
from torch import nn

from recbole_adaptssr.encoder.user_model import AttentionPooling


class LastPooling(nn.Module):
    """u = h at the last valid position."""

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(valid.size(1), device=valid.device)
        last = torch.where(valid, positions, -1).max(dim=1).values.clamp(min=0)
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


class MeanPooling(nn.Module):
    """u = mean of h over the valid positions."""

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        weights = valid.to(hidden.dtype)
        return torch.einsum("bl,bld->bd", weights, hidden) / weights.sum(dim=1, keepdim=True).clamp(min=1.0)


POOLINGS = ("attention", "last", "mean")


def build_pooling(kind: str, hidden_size: int, initializer_range: float = 0.02) -> nn.Module:
    """The readout called ``kind`` (one of :data:`POOLINGS`)."""
    if kind == "attention":
        return AttentionPooling(hidden_size, initializer_range)
    if kind == "last":
        return LastPooling()
    if kind == "mean":
        return MeanPooling()
    raise ValueError(f"user_model_pooling must be one of {list(POOLINGS)}, got {kind!r}")

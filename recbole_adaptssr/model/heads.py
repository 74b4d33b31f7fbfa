"""Downstream heads on the user representation u: a two-layer MLP with hidden size 64 (Appendix C).

One head per task kind of the paper (Table 1):
  * ``multiclass`` (T1 age, T2 life status): C logits, cross-entropy; ``predict`` -> (B, C) class probabilities.
  * ``binary`` (T5 gender): one logit, binary cross-entropy; ``predict`` -> P(class 1).
  * ``cvr`` (T6): MLP([u; t]) with a learned target-item embedding t; ``predict`` -> P(convert).
  * ``recommendation`` (T3/T4 cold recommendation into a target domain): score(u, t) = MLP(u) . t over a learned
    target-item table, trained with softmax cross-entropy over all target items; ``full_sort`` scores every
    target for the all-ranking protocol.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def two_layer_mlp(in_size: int, hidden_size: int, out_size: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_size, hidden_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_size, out_size))


class TaskHead(nn.Module):
    """Loss and scores of one downstream task kind on top of the user representation."""

    def __init__(self, kind: str, hidden_size: int, head_hidden_size: int, dropout: float,
                 num_classes: int = 0, num_targets: int = 0):
        super().__init__()
        self.kind = kind
        if kind == "multiclass":
            if num_classes < 2:
                raise ValueError(f"a multiclass head needs at least 2 classes, got {num_classes}")
            self.mlp = two_layer_mlp(hidden_size, head_hidden_size, num_classes, dropout)
        elif kind == "binary":
            self.mlp = two_layer_mlp(hidden_size, head_hidden_size, 1, dropout)
        elif kind in ("cvr", "recommendation"):
            if num_targets < 2:
                raise ValueError(f"a {kind} head needs target items, got {num_targets - 1}")
            self.target_embedding = nn.Embedding(num_targets, hidden_size, padding_idx=0)
            nn.init.normal_(self.target_embedding.weight, std=0.02)
            in_size, out_size = (2 * hidden_size, 1) if kind == "cvr" else (hidden_size, hidden_size)
            self.mlp = two_layer_mlp(in_size, head_hidden_size, out_size, dropout)
        else:
            raise ValueError(f"unknown task kind {kind!r}")

    def logits(self, u: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "multiclass":
            return self.mlp(u)
        if self.kind == "binary":
            return self.mlp(u).squeeze(-1)
        if self.kind == "cvr":
            return self.mlp(torch.cat([u, self.target_embedding(target)], dim=-1)).squeeze(-1)
        return (self.mlp(u) * self.target_embedding(target)).sum(-1)

    def loss(self, u: torch.Tensor, label: torch.Tensor | None, target: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "multiclass":
            return F.cross_entropy(self.logits(u), label.long())
        if self.kind in ("binary", "cvr"):
            return F.binary_cross_entropy_with_logits(self.logits(u, target), label.float())
        return F.cross_entropy(self.full_sort(u), target)

    def predict(self, u: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "multiclass":
            return torch.softmax(self.logits(u), dim=-1)
        if self.kind in ("binary", "cvr"):
            return torch.sigmoid(self.logits(u, target))
        return self.logits(u, target)

    def full_sort(self, u: torch.Tensor) -> torch.Tensor:
        """(B, num_targets) scores of every target item (recommendation only); column 0 is padding."""
        if self.kind != "recommendation":
            raise ValueError(f"full-sort scoring needs a recommendation task, this head is {self.kind!r}")
        return self.mlp(u) @ self.target_embedding.weight.t()

"""``cvr`` (T6): (user, target item) -> converts or not. MLP([u; t]) with a learned target embedding t;
``predict`` -> P(convert); AUC."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recbole_adaptssr.downstream.base import TaskHead, TaskKind, target_table, two_layer_mlp


class CvrHead(TaskHead):
    def __init__(self, hidden_size, head_hidden_size, dropout, num_targets):
        super().__init__()
        self.target_embedding = target_table(num_targets, hidden_size, "cvr")
        self.mlp = two_layer_mlp(2 * hidden_size, head_hidden_size, 1, dropout)

    def logits(self, u, target):
        return self.mlp(torch.cat([u, self.target_embedding(target)], dim=-1)).squeeze(-1)

    def loss(self, u, label, target):
        return F.binary_cross_entropy_with_logits(self.logits(u, target), label.float())

    def predict(self, u, target=None):
        return torch.sigmoid(self.logits(u, target))


class Cvr(TaskKind):
    name = "cvr"
    fields = ("target", "label")

    @classmethod
    def build_head(cls, hidden_size, head_hidden_size, dropout, dataset):
        return CvrHead(hidden_size, head_hidden_size, dropout, dataset.num_targets())

"""``recommendation`` (T3/T4 cold recommendation into a target domain): score(u, t) = MLP(u) . t over a learned
target-item table, softmax cross-entropy over all targets; ``full_sort`` scores every target for the all-ranking
protocol; NDCG@10."""

from __future__ import annotations

import torch.nn.functional as F

from recbole_adaptssr.downstream.base import TaskHead, TaskKind, target_table, two_layer_mlp


class RecommendationHead(TaskHead):
    def __init__(self, hidden_size, head_hidden_size, dropout, num_targets):
        super().__init__()
        self.target_embedding = target_table(num_targets, hidden_size, "recommendation")
        self.mlp = two_layer_mlp(hidden_size, head_hidden_size, hidden_size, dropout)

    def loss(self, u, label, target):
        return F.cross_entropy(self.full_sort(u), target)

    def predict(self, u, target=None):
        return (self.mlp(u) * self.target_embedding(target)).sum(-1)

    def full_sort(self, u):
        """(B, num_targets) scores of every target item; column 0 is padding."""
        return self.mlp(u) @ self.target_embedding.weight.t()


class Recommendation(TaskKind):
    name = "recommendation"
    fields = ("target",)

    @classmethod
    def build_head(cls, hidden_size, head_hidden_size, dropout, dataset):
        return RecommendationHead(hidden_size, head_hidden_size, dropout, dataset.num_targets())

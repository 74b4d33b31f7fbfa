"""``binary`` (T5 gender): one logit, binary cross-entropy; ``predict`` -> P(class 1); AUC.
The positive class is the label that sorts last."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recbole_adaptssr.downstream.base import TaskHead, TaskKind, two_layer_mlp


class BinaryHead(TaskHead):
    def __init__(self, hidden_size, head_hidden_size, dropout):
        super().__init__()
        self.mlp = two_layer_mlp(hidden_size, head_hidden_size, 1, dropout)

    def loss(self, u, label, target):
        return F.binary_cross_entropy_with_logits(self.mlp(u).squeeze(-1), label.float())

    def predict(self, u, target=None):
        return torch.sigmoid(self.mlp(u).squeeze(-1))


class Binary(TaskKind):
    name = "binary"
    fields = ("label",)
    class_labels = True
    num_classes = 2

    @classmethod
    def build_head(cls, hidden_size, head_hidden_size, dropout, dataset):
        return BinaryHead(hidden_size, head_hidden_size, dropout)

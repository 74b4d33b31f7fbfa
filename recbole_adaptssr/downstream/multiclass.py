"""``multiclass`` (T1 age, T2 life status): C logits, cross-entropy; ``predict`` -> (B, C) class probabilities; Acc."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recbole_adaptssr.downstream.base import TaskHead, TaskKind, two_layer_mlp


class MulticlassHead(TaskHead):
    def __init__(self, hidden_size, head_hidden_size, dropout, num_classes):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a multiclass head needs at least 2 classes, got {num_classes}")
        self.mlp = two_layer_mlp(hidden_size, head_hidden_size, num_classes, dropout)

    def loss(self, u, label, target):
        return F.cross_entropy(self.mlp(u), label.long())

    def predict(self, u, target=None):
        return torch.softmax(self.mlp(u), dim=-1)


class Multiclass(TaskKind):
    name = "multiclass"
    fields = ("label",)
    class_labels = True

    @classmethod
    def build_head(cls, hidden_size, head_hidden_size, dropout, dataset):
        return MulticlassHead(hidden_size, head_hidden_size, dropout, dataset.num_classes())

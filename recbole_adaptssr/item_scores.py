"""The score of each row's own target item, shared by the blocked (:mod:`recbole_adaptssr.item_softmax`) and the
fused (:mod:`recbole_adaptssr.item_softmax_fused`) item cross-entropy. Imports torch alone."""

from __future__ import annotations

import torch


def target_scores(h, t, item_weight, bias):
    """(rows,) scores of each row's own target, <h_r, W[t_r]> + b[t_r], accumulated in float32 or wider."""
    acc = torch.promote_types(h.dtype, torch.float32)
    s = (h.to(acc) * item_weight.index_select(0, t).to(acc)).sum(dim=1)
    if bias is not None:
        s = s + bias.index_select(0, t).to(acc)
    return s

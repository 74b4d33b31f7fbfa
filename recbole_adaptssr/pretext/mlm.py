"""``mlm``: masked behaviour prediction (PeterRec's MLM), the warm-up of Algorithm 1 line 1.

A share ``mlm_mask_ratio`` of each sequence's valid positions (at least one) is replaced by the mask token and
predicted among all items from the encoder's hidden state at that position. The output layer is tied to the
item embeddings (plus a per-item bias); ``mlm_head: transform`` puts BERT's dense + GELU + LayerNorm transform
before it, ``mlm_head: tied`` is the authors' release (the tied layer alone).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recbole_adaptssr.pretext.base import PretextTask, StageSettings

HEADS = ("transform", "tied")


class MaskedItemHead(nn.Module):
    """Scores of every item at the masked positions, against the (tied) item embedding table."""

    def __init__(self, hidden_size: int, n_items: int, kind: str, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.transform = (
            nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size, eps=layer_norm_eps))
            if kind == "transform" else nn.Identity()
        )
        self.bias = nn.Parameter(torch.zeros(n_items))

    def forward(self, hidden: torch.Tensor, item_weight: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden) @ item_weight.t() + self.bias


class MLM(PretextTask):
    name = "mlm"

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        self.mask_ratio = float(settings["mask_ratio"])
        self.head = MaskedItemHead(hidden_size, n_items, settings["head"], settings.get("layer_norm_eps", 1e-12))

    @classmethod
    def check_settings(cls, settings):
        ratio = settings["mask_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
            raise ValueError(f"{settings.key('mask_ratio')} must be a number in (0, 1], got {ratio!r}")
        if settings["head"] not in HEADS:
            raise ValueError(f"{settings.key('head')} must be one of {list(HEADS)}, got {settings['head']!r}")
        super().check_settings(settings)

    @classmethod
    def valid_metrics(cls, settings):
        return {"loss": False, "mlm_acc": True}

    def _predict_masked(self, encoder, item_seq, generator):
        valid = item_seq != 0
        noise = torch.rand(item_seq.shape, generator=generator, device=item_seq.device)
        noise = noise.masked_fill(~valid, 2.0)
        chosen = noise < self.mask_ratio
        # every sequence predicts at least one behaviour: its position with the smallest noise
        chosen = chosen | F.one_hot(noise.argmin(dim=1), item_seq.size(1)).bool()
        hidden, _ = encoder.encode(item_seq.masked_fill(chosen, encoder.mask_token_id))
        logits = self.head(hidden[chosen], encoder.item_embedding.weight[: self.n_items])
        return logits, item_seq[chosen]

    def loss(self, encoder, item_seq, item_seq_len, generator=None):
        logits, targets = self._predict_masked(encoder, item_seq, generator)
        return F.cross_entropy(logits, targets)

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        logits, targets = self._predict_masked(encoder, item_seq, generator)
        return {"loss": float(F.cross_entropy(logits, targets)),
                "mlm_acc": float((logits.argmax(dim=-1) == targets).float().mean())}

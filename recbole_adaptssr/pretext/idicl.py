"""``idicl``: IDICL's interest-oriented contrastive pre-training (Sun et al., "Learning Interest-Oriented Universal
User Representation via Self-Supervision", ACM MM 2022) with the shared user model.

Views: two time periods of one sequence, the earlier ``ceil(idicl_split_ratio * n)`` behaviours and the later rest
(both at least one behaviour when n >= 2; a sequence of one behaviour is both of its views), each left-aligned.

Interest dictionary: K learnable interest vectors ``D (K, d)``. For a view with hidden states ``H`` (from the shared
encoder) and pooled representation ``u``:

* interest-oriented representations ``r_k = sum_t softmax_t(D_k . h_t / sqrt d) h_t`` (each interest attends over
  the view's behaviours: behaviour aggregation), ``(B, K, d)``;
* principal interests: the ``idicl_top_interests`` interests with the highest relevance ``D_k . u / sqrt d``, weighted
  by the softmax of their relevance (the others weigh 0).

A view is represented by ``z = concat_k sqrt(w_k) r_k / |r_k|``, so that ``z . z' = sum_k sqrt(w_k w'_k) cos(r_k,
r'_k)``: two periods are alike when they share principal interests whose representations agree. The two periods of
each sequence are contrasted with symmetric InfoNCE, the other sequences' periods of the batch as negatives
(:class:`recbole_adaptssr.pretext.cl4srec.InBatchContrastive`). The dictionary is the task's own (not part of the
user model a downstream task loads); the relevance trains the user model's attention pooling too.

Validation adds ``interest_usage``: the share of the K interests that are a principal interest of some view of the
batch (``idicl_top_interests / K`` means every user is given the same interests: the dictionary collapsed, which
:meth:`IDICL.check_end` reports).

Deviations (docs/pretext-tasks-b.md): IDICL's encoder, its exact interest selection and aggregation, and how its
contrastive loss pairs interests are its own; only the outline above (periods as views, a dictionary of principal
interests, aggregation of behaviours per interest, contrast between periods) is taken from it. The downstream
representation here is the shared model's pooled u, as for every pretext task of the comparison.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole_adaptssr.pretext.base import StageSettings
from recbole_adaptssr.pretext.cl4srec import InBatchContrastive, check_number


def split_periods(item_seq: torch.Tensor, item_seq_len: torch.Tensor, ratio: float):
    """The earlier and the later period of each sequence, left-aligned and 0-padded: ``(early, early_len, late,
    late_len)``. The earlier holds ``clamp(ceil(ratio * n), 1, n - 1)`` behaviours (all of them, and the later too,
    when n = 1)."""
    n = item_seq_len.to(device=item_seq.device, dtype=torch.long)
    L = item_seq.shape[1]
    pos = torch.arange(L, device=item_seq.device).unsqueeze(0)
    cut = torch.ceil(n.to(torch.float64) * ratio - 1e-6).long()
    cut = torch.minimum(cut.clamp(min=1), (n - 1).clamp(min=1))
    single = n == 1
    early_len = torch.where(single, n, cut)
    late_len = torch.where(single, n, n - cut)
    start = torch.where(single, torch.zeros_like(cut), cut)
    early = torch.where(pos < early_len.unsqueeze(1), item_seq, torch.zeros_like(item_seq))
    late = item_seq.gather(1, (pos + start.unsqueeze(1)).clamp(max=L - 1))
    late = torch.where(pos < late_len.unsqueeze(1), late, torch.zeros_like(late))
    return early, early_len, late, late_len


class InterestDictionary(nn.Module):
    """K interest vectors; a view's hidden states and u -> its interest-matched representation z and the weights."""

    def __init__(self, n_interests: int, hidden_size: int, top: int, initializer_range: float = 0.02):
        super().__init__()
        self.interests = nn.Parameter(torch.randn(n_interests, hidden_size) * initializer_range)
        self.top = top

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor, u: torch.Tensor):
        scale = 1.0 / math.sqrt(hidden.shape[-1])
        scores = torch.einsum("bld,kd->bkl", hidden, self.interests) * scale
        attention = torch.softmax(scores.masked_fill(~valid.unsqueeze(1), float("-inf")), dim=-1)
        representations = F.normalize(torch.einsum("bkl,bld->bkd", attention, hidden), dim=-1)  # (B, K, d)
        relevance = (u @ self.interests.T) * scale  # (B, K)
        principal = torch.zeros_like(relevance, dtype=torch.bool)
        principal.scatter_(1, relevance.topk(self.top, dim=1).indices, True)
        # sqrt of the softmax over the principal interests, written so that the others get 0 and no NaN gradient
        root_weight = torch.exp(0.5 * torch.log_softmax(relevance.masked_fill(~principal, float("-inf")), dim=1))
        z = (representations * root_weight.unsqueeze(-1)).flatten(1)  # (B, K * d), unit norm
        return z, principal


class IDICL(InBatchContrastive):
    name = "idicl"

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        self.split_ratio = float(settings["split_ratio"])
        self.dictionary = InterestDictionary(int(settings["n_interests"]), hidden_size, int(settings["top_interests"]),
                                             settings.get("initializer_range", 0.02))
        self._principal = None  # principal-interest masks of the last views (for interest_usage)

    @classmethod
    def check_settings(cls, settings):
        check_number(settings, "n_interests", 1, integer=True)
        check_number(settings, "top_interests", 1, integer=True)
        if settings["top_interests"] > settings["n_interests"]:
            raise ValueError(
                f"{settings.key('top_interests')}={settings['top_interests']} must not exceed "
                f"{settings.key('n_interests')}={settings['n_interests']}"
            )
        ratio = settings["split_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
            raise ValueError(f"{settings.key('split_ratio')} must be a number in (0, 1), got {ratio!r}")
        super().check_settings(settings)

    def views(self, encoder, item_seq, item_seq_len, generator=None):
        early, _, late, _ = split_periods(item_seq, item_seq_len, self.split_ratio)
        hidden, valid = encoder.encode(torch.cat([early, late], dim=0))
        u = encoder.pooling(hidden, valid)
        z, principal = self.dictionary(hidden, valid, u)
        self._principal = principal
        z_early, z_late = z.chunk(2, dim=0)
        return z_early, z_late, None

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        stats = super().validation_step(encoder, item_seq, item_seq_len, generator)
        stats["interest_usage"] = float(self._principal.any(dim=0).float().mean())
        return stats

    def check_end(self, statistics):
        """Part A's collapse warning, and one when every view of a batch had the same principal interests."""
        warnings = [super().check_end(statistics)]
        usage, n_interests = statistics.get("interest_usage"), self.dictionary.interests.shape[0]
        if usage is not None and usage * n_interests <= self.dictionary.top + 1e-6:
            warnings.append(
                f"[{self.name}] interest_usage {usage:.4f}: every view of a batch had the same {self.dictionary.top} "
                f"principal interests of the {n_interests}, so the interest dictionary collapsed and the contrast "
                "ignores what distinguishes users' interests."
            )
        return " ".join(w for w in warnings if w) or None

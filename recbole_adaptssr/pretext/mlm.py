"""``mlm``: masked behaviour prediction (PeterRec's MLM), the warm-up of Algorithm 1 line 1.

A share ``mlm_mask_ratio`` of each sequence's valid positions (at least one, never all of a longer sequence) is
replaced by the mask token and predicted among ALL items from the encoder's hidden state at that position. The
output layer is tied to the item embeddings plus a per-item bias (``mlm_head: tied``, the authors' release);
``mlm_head: transform`` puts BERT's dense + GELU + LayerNorm before it. The full-softmax cross-entropy is computed
in fixed-size blocks (:mod:`recbole_adaptssr.item_softmax`) or by fused kernels (``item_softmax_kernel``): exact,
without the (masked positions x items) logits, so memory stays flat from step to step.

Validation reports, on the same masked positions, the loss, top-1 accuracy (``mlm_acc``), ``hit@10`` and
``ndcg@10`` among all items, and the same for the popularity baseline (the training split's item frequencies):
``pop_loss``, ``pop_hit@10``, ``pop_ndcg@10``. A warm-up that has not beaten the popularity baseline is reported.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recbole_adaptssr.item_softmax import fused_applies, item_cross_entropy, item_ranking_statistics
from recbole_adaptssr.item_softmax_fused import triton_installed
from recbole_adaptssr.pretext.base import PretextTask, StageSettings

HEADS = ("transform", "tied")
TOPK = 10


class MaskedItemHead(nn.Module):
    """Hidden state -> scores of every item against the (tied) item embedding table, plus a per-item bias."""

    def __init__(self, hidden_size: int, n_items: int, kind: str, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.transform = (
            nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size, eps=layer_norm_eps))
            if kind == "transform" else nn.Identity()
        )
        self.bias = nn.Parameter(torch.zeros(n_items))


class MLM(PretextTask):
    name = "mlm"

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        self.mask_ratio = float(settings["mask_ratio"])
        self.head = MaskedItemHead(hidden_size, n_items, settings["head"], settings.get("layer_norm_eps", 1e-12))
        # popularity baseline, fitted on the training split: log-frequency and popularity rank of each item
        self.register_buffer("popularity_log_prob", torch.zeros(n_items), persistent=False)
        self.register_buffer("popularity_rank", torch.zeros(n_items, dtype=torch.long), persistent=False)
        self.popularity_fitted = False
        self.mean_length = None  # of the training sequences: the fused softmax's expected number of masked rows

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
        return {"loss": False, "mlm_acc": True, f"hit@{TOPK}": True, f"ndcg@{TOPK}": True}

    def fit_data(self, dataset) -> None:
        """Item frequencies of the training sequences: the popularity baseline of the validation statistics."""
        seq = dataset.inter_feat[dataset.item_id_list_field]
        counts = torch.bincount(seq[seq != 0].flatten(), minlength=self.n_items)[: self.n_items].float()
        counts[0] = 0.0
        log_prob = torch.log(counts.clamp(min=0.5) / counts.sum())  # unseen items: half a count
        rank = _rank_by_count(counts)
        self.popularity_log_prob.copy_(log_prob)
        self.popularity_rank.copy_(rank)
        self.popularity_fitted = True
        self.mean_length = float((seq != 0).sum()) / max(seq.size(0), 1)

    def _masked_positions(self, item_seq, generator):
        valid = item_seq != 0
        noise = torch.rand(item_seq.shape, generator=generator, device=item_seq.device)
        noise = noise.masked_fill(~valid, 2.0)
        chosen = noise < self.mask_ratio
        # every sequence predicts at least one behaviour: its position with the smallest noise (a comparison, not
        # F.one_hot, which checks its indices on the host: a synchronisation on a GPU)
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        return chosen | (positions == noise.argmin(dim=1, keepdim=True))

    def _predict_masked(self, encoder, item_seq, generator):
        """(transformed hidden states at the masked positions (N, d), their original items (N,))."""
        chosen = self._masked_positions(item_seq, generator)
        hidden, _ = encoder.encode(item_seq.masked_fill(chosen, encoder.mask_token_id))
        return self.head.transform(hidden[chosen]), item_seq[chosen]

    def _predict_masked_padded(self, encoder, item_seq, generator):
        """As :meth:`_predict_masked` with shapes that do not depend on the data: every position's row, the masked
        ones first in :meth:`_predict_masked`'s order, their count as a device tensor (B * L rows, (1,) count)."""
        chosen = self._masked_positions(item_seq, generator)
        hidden, _ = encoder.encode(item_seq.masked_fill(chosen, encoder.mask_token_id))
        flat = chosen.flatten()
        # a stable sort of "not chosen" puts the chosen positions first, in row-major order (as hidden[chosen])
        order = torch.argsort(flat.logical_not().to(torch.int8), stable=True)
        rows = hidden.reshape(-1, hidden.size(-1)).index_select(0, order)
        return self.head.transform(rows), item_seq.flatten().index_select(0, order), flat.sum().reshape(1)

    def _item_table(self, encoder):
        return encoder.item_embedding.weight[: self.n_items]

    @property
    def cuda_graph_safe(self) -> bool:
        """The training loss runs without host synchronisation on CUDA (:meth:`loss`) when the fused softmax
        kernels take it; the trainer then captures the step in a CUDA graph (``cuda_graphs``)."""
        return self.item_softmax_options.get("kernel", "blocked") != "blocked" and triton_installed()

    def loss(self, encoder, item_seq, item_seq_len, generator=None):
        """Mean cross-entropy over the masked positions. Where the fused kernels run (CUDA), every position's row
        goes to them with the count of masked ones, so nothing waits for the GPU and the step can be replayed from a
        CUDA graph; elsewhere the masked rows alone go to the blocked kernel (their number read on the host)."""
        table = self._item_table(encoder)
        if fused_applies(self.item_softmax_options.get("kernel", "blocked"), table):
            hidden, targets, count = self._predict_masked_padded(encoder, item_seq, generator)
            length = item_seq.size(1) if self.mean_length is None else min(self.mean_length, item_seq.size(1))
            return item_cross_entropy(hidden, table, targets, self.head.bias, valid_rows=count,
                                      expected_rows=math.ceil(self.mask_ratio * item_seq.size(0) * length),
                                      check_targets=False, **self.item_softmax_options)
        hidden, targets = self._predict_masked(encoder, item_seq, generator)
        return item_cross_entropy(hidden, table, targets, self.head.bias, **self.item_softmax_options)

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        hidden, targets = self._predict_masked(encoder, item_seq, generator)
        table = self._item_table(encoder)
        ranking = item_ranking_statistics(hidden, table, targets, self.head.bias, k=TOPK)
        loss = item_cross_entropy(hidden, table, targets, self.head.bias, **self.item_softmax_options)
        stats = {"loss": float(loss),
                 "mlm_acc": float(ranking["accuracy"]), f"hit@{TOPK}": float(ranking[f"hit@{TOPK}"]),
                 f"ndcg@{TOPK}": float(ranking[f"ndcg@{TOPK}"])}
        if self.popularity_fitted:
            rank = self.popularity_rank[targets]
            stats.update({"pop_loss": float(-self.popularity_log_prob[targets].mean()),
                          f"pop_hit@{TOPK}": float((rank < TOPK).float().mean()),
                          f"pop_ndcg@{TOPK}": float(torch.where(rank < TOPK, 1.0 / torch.log2(rank.float() + 2),
                                                                torch.zeros(())).mean())})
        return stats

    @staticmethod
    def beats_popularity(statistics: dict) -> bool | None:
        """Whether the model beats the popularity baseline in hit@10 and loss (None without a baseline)."""
        hit, pop = statistics.get(f"hit@{TOPK}"), statistics.get(f"pop_hit@{TOPK}")
        if hit is None or pop is None:
            return None
        return hit > pop and statistics["loss"] < statistics.get("pop_loss", math.inf)

    def may_stop(self, statistics: dict) -> bool:
        """Not on the popularity plateau (unless ``mlm_stop_on_plateau``): the validation loss can stall there for
        many epochs before the model learns more than item frequencies; then only mlm_epochs ends the stage."""
        return bool(self.settings.get("stop_on_plateau", False)) or self.beats_popularity(statistics) is not False

    def check_end(self, statistics: dict) -> str | None:
        if self.beats_popularity(statistics) is False:
            hit, pop = statistics[f"hit@{TOPK}"], statistics[f"pop_hit@{TOPK}"]
            loss, pop_loss = statistics["loss"], statistics.get("pop_loss", math.inf)
            return (f"[mlm] the warm-up has not beaten the popularity baseline (hit@{TOPK} {hit:.4f} vs {pop:.4f}, "
                    f"loss {loss:.4f} vs {pop_loss:.4f}): it has not converged; the ranking stage would start from "
                    "nearly identical user representations. Train longer (mlm_epochs, mlm_stopping_step, "
                    "mlm_min_epochs) or with a larger mlm_learning_rate.")
        return None


def _rank_by_count(counts: torch.Tensor) -> torch.Tensor:
    """Number of items with a strictly higher count, for each item (sort-based: O(V log V))."""
    order = torch.sort(counts, descending=True).values
    # items strictly above c = position of the first c in the descending order
    return torch.searchsorted(-order, -counts, right=False)

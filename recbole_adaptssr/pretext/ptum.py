"""``ptum``: PTUM's two self-supervised tasks (Wu et al., Findings of EMNLP 2020), predicting behaviours from u.

* Masked behaviour prediction (MBP): one behaviour per sequence, at a uniformly drawn position, is replaced by the
  mask token (PTUM's release masks one behaviour and blanks it); the user representation u of the masked sequence
  must rank the masked behaviour first among its candidates.
* Next K behaviour prediction (NBP): each sequence is split into a prefix and its last ``ptum_next_k`` behaviours;
  the u of the prefix must rank each of those K behaviours first among its candidates. A sequence of n <= K
  behaviours predicts its last n - 1 from its first one; a sequence of one behaviour has no NBP term.

Both inputs are stacked into ONE forward pass (2B sequences, as PTUM's release doubles its batch). A candidate's score
is ``u . e_c`` with ``e_c`` the user model's own item embedding (PTUM: ``u . (r_c + p)``, r_c its behaviour encoder's
vector, p a position embedding shared by all candidates of one prediction, which therefore cancels in the softmax).
Candidates: the positive and ``ptum_negatives`` negatives drawn from the behaviour distribution of the training
split (a random behaviour of a random user, as PTUM's release; a negative equal to the positive is ignored, where the
release re-draws it), a sampled softmax; ``ptum_negatives: 0`` is the exact full softmax over all items instead
(computed in blocks by :mod:`recbole_adaptssr.item_softmax`, so it fits at TTL's 646k items).
Loss: ``L_MBP + ptum_nbp_weight * L_NBP`` (the release sums the two with weight 1), each a mean over its predictions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recbole_adaptssr.item_softmax import item_cross_entropy, item_ranking_statistics
from recbole_adaptssr.objectives import candidate_logits, mean_offdiagonal_cosine
from recbole_adaptssr.pretext.base import PretextTask, StageSettings
from recbole_adaptssr.pretext.cl4srec import check_number, collapse_warning


class PTUM(PretextTask):
    name = "ptum"
    min_batch_size = 2  # no in-batch negatives, but mean_cosine (the collapse signal) compares users

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        self.next_k = int(settings["next_k"])
        self.n_negatives = int(settings["negatives"])
        self.nbp_weight = float(settings["nbp_weight"])
        self.negative_weights = None  # behaviour distribution of the training split (fit_data), not saved

    @classmethod
    def check_settings(cls, settings):
        check_number(settings, "next_k", 1, integer=True)
        check_number(settings, "negatives", 0, integer=True)
        check_number(settings, "nbp_weight", 0)
        super().check_settings(settings)

    @classmethod
    def valid_metrics(cls, settings):
        return {"loss": False, "mbp_acc": True, "nbp_acc": True}

    def fit_data(self, dataset) -> None:
        """Weight of each item as a negative: the chance that a random behaviour of a random training user is it."""
        config = dataset.config
        seqs = dataset.inter_feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]]
        lengths = dataset.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]].to(seqs.device)
        share = (seqs != 0).double() / lengths.clamp(min=1)[:, None].double()
        weights = torch.zeros(self.n_items + 1, dtype=torch.float64, device=seqs.device)
        weights.index_add_(0, seqs.reshape(-1), share.reshape(-1))
        weights[0] = 0.0
        weights = weights[: self.n_items].float().to(config["device"])  # never the mask token (id n_items)
        self.negative_weights = weights if bool(weights.any()) else None

    def _negatives(self, targets, generator):
        if self.n_negatives == 0:
            return None
        if self.negative_weights is None:  # no corpus (fit_data not called): uniform over the items
            self.negative_weights = torch.ones(self.n_items, device=targets.device)
            self.negative_weights[0] = 0.0
        weights = self.negative_weights = self.negative_weights.to(targets.device)
        drawn = torch.multinomial(weights, targets.numel() * self.n_negatives, replacement=True, generator=generator)
        return drawn.view(targets.numel(), self.n_negatives)

    def _queries(self, encoder, item_seq, item_seq_len, generator):
        """u of the B masked sequences (MBP), then u of each prefix once per behaviour it must predict (NBP); the
        behaviours to predict; and u of the masked sequences."""
        batch, width = item_seq.shape
        device = item_seq.device
        n = item_seq_len.to(device).long()
        rows = torch.arange(batch, device=device)
        masked = torch.minimum((torch.rand(batch, generator=generator, device=device) * n).long(), n - 1)
        mbp_input = item_seq.clone()
        mbp_input[rows, masked] = encoder.mask_token_id
        n_next = (n - 1).clamp(min=0, max=self.next_k)  # behaviours predicted after the prefix
        positions = torch.arange(width, device=device)
        prefix = item_seq.masked_fill(positions[None, :] >= (n - n_next)[:, None], 0)
        steps = torch.arange(self.next_k, device=device)
        valid = steps[None, :] < n_next[:, None]  # (B, K)
        next_items = item_seq.gather(1, ((n - n_next)[:, None] + steps[None, :]).clamp(max=width - 1))[valid]

        u_mbp, u_prefix = encoder(torch.cat([mbp_input, prefix], dim=0)).chunk(2, dim=0)
        query = torch.cat([u_mbp, u_prefix[:, None, :].expand(-1, self.next_k, -1)[valid]], dim=0)
        return query, torch.cat([item_seq[rows, masked], next_items], dim=0), u_mbp

    def _predictions(self, encoder, query, targets, generator, hits=False):
        """Per-prediction cross-entropy (N,) and, with ``hits``, whether each target is ranked first (N,)."""
        if self.n_negatives == 0:  # full softmax over the items 1..n_items-1 (no padding, no mask token), in blocks
            table = encoder.item_embedding.weight[1:self.n_items]
            ce = item_cross_entropy(query, table, targets - 1, reduction="none", **self.item_softmax_options)
            return ce, (item_ranking_statistics(query, table, targets - 1)["rank"] == 0) if hits else None
        logits, column = candidate_logits(query, encoder.item_embedding.weight, targets,
                                          self._negatives(targets, generator))
        return F.cross_entropy(logits, column, reduction="none"), (logits.argmax(dim=1) == column) if hits else None

    def _losses(self, ce, batch):
        mbp = ce[:batch].mean()
        nbp = ce[batch:].mean() if ce.numel() > batch else ce.new_zeros(())
        return mbp + self.nbp_weight * nbp, mbp, nbp

    def loss(self, encoder, item_seq, item_seq_len, generator=None):
        query, targets, _ = self._queries(encoder, item_seq, item_seq_len, generator)
        return self._losses(self._predictions(encoder, query, targets, generator)[0], item_seq.size(0))[0]

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        """``loss``, ``mbp_loss``, ``nbp_loss``; ``mbp_acc``/``nbp_acc``: share of predictions ranking their behaviour
        first among their candidates; ``mean_cosine`` between users' u."""
        query, targets, u = self._queries(encoder, item_seq, item_seq_len, generator)
        ce, hits = self._predictions(encoder, query, targets, generator, hits=True)
        batch = item_seq.size(0)
        loss, mbp, nbp = self._losses(ce, batch)
        return {"loss": float(loss), "mbp_loss": float(mbp), "nbp_loss": float(nbp),
                "mbp_acc": float(hits[:batch].float().mean()),
                "nbp_acc": float(hits[batch:].float().mean()) if hits.numel() > batch else 0.0,
                "mean_cosine": float(mean_offdiagonal_cosine(u))}

    def check_start(self, statistics):
        return collapse_warning(self.name, statistics)

    def check_end(self, statistics):
        return collapse_warning(self.name, statistics, end=True)

"""``duorec``: DuoRec's contrastive regularisation as pre-training (Qiu et al., WSDM 2022).

DuoRec contrasts two views of a sequence: its model-level augmentation (a dropout pass of the sequence) and a
supervised positive (a dropout pass of ANOTHER training sequence with the same target), with symmetric InfoNCE
against the other in-batch views (its released ``us_x`` variant: dot product, temperature 1). Here the "target"
of a sequence is its last behaviour (there is no next item in pure pre-training); with ``duorec_drop_last`` (the
default) the encoder sees every sequence without that last behaviour, as DuoRec's target is never part of its
input, so two sequences cannot be matched by simply reading the shared item (a sequence of one behaviour keeps it).

The positives come from the training split, indexed once by :meth:`DuoRec.fit_data` on the device: the sequences
sorted by last behaviour with each behaviour's start and count, so a batch draws its positives with tensor ops (no
per-sample loop). The anchor itself is excluded (DuoRec samples among the other sequences sharing the target);
when no other sequence shares it, the positive is the sequence itself (a second dropout pass), as DuoRec's release
falls back. ``duorec_same_target`` says what the other in-batch sequences sharing the anchor's last behaviour are:
``mask`` (default) removes them from the negatives (they are positives by DuoRec's own definition: false
negatives), ``keep`` leaves them as negatives (DuoRec's released code), ``positive`` counts them as extra positives.
"""

from __future__ import annotations

import torch

from recbole_adaptssr.objectives import SAME_LABEL
from recbole_adaptssr.pretext.base import StageSettings
from recbole_adaptssr.pretext.cl4srec import InBatchContrastive, check_bool, check_choice


def last_behaviours(item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
    """(B,) the last valid behaviour of each left-aligned sequence."""
    return item_seq.gather(1, (item_seq_len.long() - 1).clamp(min=0)[:, None]).squeeze(1)


def drop_last(item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
    """The sequences without their last behaviour (padding in its place); a sequence of one behaviour is kept."""
    last = (item_seq_len.long() - 1)[:, None]
    positions = torch.arange(item_seq.size(1), device=item_seq.device)[None, :]
    return item_seq.masked_fill((positions == last) & (last > 0), 0)


class DuoRec(InBatchContrastive):
    name = "duorec"

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        self.same_label = settings["same_target"]
        self.drop_last = settings["drop_last"]
        self.corpus = self.starts = self.counts = None  # the index of fit_data (not parameters: never saved)

    @classmethod
    def check_settings(cls, settings):
        check_choice(settings, "same_target", SAME_LABEL)
        check_bool(settings, "drop_last")
        super().check_settings(settings)

    def fit_data(self, dataset) -> None:
        """Index the training sequences by last behaviour, on the device the model trains on."""
        config = dataset.config
        seqs = dataset.inter_feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]]
        lengths = dataset.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]]
        self.build_index(seqs, lengths, device=config["device"])

    def build_index(self, seqs: torch.Tensor, lengths: torch.Tensor, device=None) -> None:
        """``corpus``: the sequences sorted by last behaviour (int32 where ids fit); ``starts``/``counts``: where
        each behaviour's sequences lie in it."""
        seqs = seqs.to(device) if device is not None else seqs
        last = last_behaviours(seqs, lengths.to(seqs.device))
        order = torch.argsort(last, stable=True)
        small = int(seqs.max()) < 2 ** 31 if seqs.numel() else True
        self.corpus = seqs[order].to(torch.int32 if small else torch.long)
        self.counts = torch.bincount(last, minlength=self.n_items + 1)
        self.starts = torch.cumsum(self.counts, dim=0) - self.counts

    def sample_positives(self, item_seq, item_seq_len, generator=None):
        """(B, L) for each sequence another training sequence with the same last behaviour (uniform over the others;
        the sequence itself when there is none), and the (B,) last behaviours."""
        if self.corpus is None:
            raise RuntimeError("duorec samples its positives from the training split: call fit_data(train split) first")
        device = item_seq.device
        if self.corpus.device != device:
            self.corpus, self.starts, self.counts = (t.to(device) for t in (self.corpus, self.starts, self.counts))
        target = last_behaviours(item_seq, item_seq_len)
        inside = target < self.counts.numel()
        safe_target = torch.where(inside, target, torch.zeros_like(target))
        count = torch.where(inside, self.counts[safe_target], torch.zeros_like(target))
        start = self.starts[safe_target]
        draws = torch.rand((2, target.numel()), generator=generator, device=device, dtype=torch.float64)
        first = torch.minimum((draws[0] * count).long(), (count - 1).clamp(min=0))
        last_row = self.corpus.size(0) - 1
        width = min(self.corpus.size(1), item_seq.size(1))

        def rows(slot):
            picked = self.corpus[(start + slot).clamp(max=last_row)].long()
            out = torch.zeros_like(item_seq)
            out[:, :width] = picked[:, :width]
            return out

        candidate = rows(first)
        is_self = (candidate == item_seq).all(dim=1)
        # the anchor was drawn: draw again among the count - 1 others (uniform over them overall)
        other = (first + 1 + torch.minimum((draws[1] * (count - 1)).long(), (count - 2).clamp(min=0))) % count.clamp(min=1)
        candidate = torch.where((is_self & (count > 1))[:, None], rows(other), candidate)
        none = (count == 0) | (is_self & (count == 1))
        return torch.where(none[:, None], item_seq, candidate), target

    def views(self, encoder, item_seq, item_seq_len, generator=None):
        positives, target = self.sample_positives(item_seq, item_seq_len, generator)
        anchors = item_seq
        if self.drop_last:  # a sampled positive shares the anchor's last behaviour, hence its length rule
            anchors = drop_last(item_seq, item_seq_len)
            positives = drop_last(positives, (positives != 0).sum(dim=1))
        u1, u2 = encoder(torch.cat([anchors, positives], dim=0)).chunk(2, dim=0)
        return u1, u2, target

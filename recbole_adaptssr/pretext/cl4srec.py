"""``cl4srec``: CL4SRec's contrastive pre-training (Xie et al., ICDE 2022) on the user representation u.

Two views f(S), g(S) of each sequence by the configured explicit augmentations (``augmentations`` and the
operators' ``<op>_ratio``, built by ``SequenceAugmenter.from_settings``; this task's YAML sets CL4SRec's proportions
as ``cl4srec_<key>``), both encoded in one forward pass, and symmetric InfoNCE with the 2(B-1) other augmented sequences of the batch as negatives
(NT-Xent, :func:`recbole_adaptssr.objectives.info_nce`). Deviation: CL4SRec represents a sequence by the hidden
state of its last position and trains the contrastive loss jointly with next-item prediction; here the
representation is the attention-pooled u of the shared user model (Eq. 2-4) and the task is pure pre-training, as
every pretext task of the comparison (docs/pretext-tasks-a.md).

This module also holds what the baseline tasks share: :class:`InBatchContrastive` (two views -> InfoNCE, its
validation statistics and collapse warning; CLUE and DuoRec subclass it), :func:`encode_views`,
:func:`collapse_warning` and the setting checks.
"""

from __future__ import annotations

import math

import torch

from recbole_adaptssr.augment.sequence import SequenceAugmenter
from recbole_adaptssr.objectives import (
    SIMILARITIES,
    contrastive_logits,
    mean_offdiagonal_cosine,
    multi_positive_cross_entropy,
    top1_accuracy,
)
from recbole_adaptssr.pretext.base import PretextTask, StageSettings

#: mean cosine between different users' u above which the representations are reported as collapsed
COLLAPSE_COSINE = 0.95


# ------------------------------------------------------------------------------------------- shared pieces
def check_number(settings: StageSettings, key: str, minimum: float, *, strict: bool = False,
                 integer: bool = False) -> None:
    """Raise ``ValueError`` naming the key unless ``settings[key]`` is a finite number (an int if ``integer``)
    ``>= minimum`` (``> minimum`` if ``strict``)."""
    value = settings[key]
    kind = int if integer else (int, float)
    ok = not isinstance(value, bool) and isinstance(value, kind) and math.isfinite(value) and (
        value > minimum if strict else value >= minimum)
    if not ok:
        what = "an integer" if integer else "a number"
        raise ValueError(f"{settings.key(key)} must be {what} {'>' if strict else '>='} {minimum}, got {value!r}")


def check_choice(settings: StageSettings, key: str, allowed) -> None:
    if settings[key] not in allowed:
        raise ValueError(f"{settings.key(key)} must be one of {list(allowed)}, got {settings[key]!r}")


def check_bool(settings: StageSettings, key: str) -> None:
    if not isinstance(settings[key], bool):
        raise ValueError(f"{settings.key(key)} must be True or False, got {settings[key]!r}")


def encode_views(augmenter, encoder, item_seq, item_seq_len, generator=None):
    """u of the two augmented views f(S), g(S) of each sequence, both encoded in one forward pass: (B, d) each."""
    pair = augmenter(item_seq, item_seq_len, generator=generator)
    u1, u2 = encoder(torch.cat([pair.seq_a, pair.seq_b], dim=0)).chunk(2, dim=0)
    return u1, u2


def collapse_warning(stage: str, statistics: dict, end: bool = False) -> str | None:
    """A warning when the mean cosine between different users' representations says they collapsed, before the
    stage trains (``end=False``: ``check_start``) or at its kept epoch (``end=True``: ``check_end``)."""
    cosine = statistics.get("mean_cosine")
    if cosine is None or not cosine > COLLAPSE_COSINE:
        return None
    if end:
        return (f"[{stage}] mean cosine {cosine:.4f} > {COLLAPSE_COSINE} between the representations of different "
                "users at the kept epoch: the stage ended collapsed (every user looks alike), so its user model "
                "carries little for downstream tasks whatever its loss says.")
    return (f"[{stage}] mean cosine {cosine:.4f} > {COLLAPSE_COSINE} between the representations of different users: "
            "they start nearly collapsed onto one direction, so contrasting them carries little signal at first. A "
            "previous stage that collapsed the representations (see its validation) is the usual cause.")


def contrastive_form(settings: StageSettings, similarity_key: str = "similarity",
                     temperature_key: str = "temperature") -> tuple:
    """(similarity, temperature) of an InfoNCE-family stage: ``contrastive_similarity`` /
    ``contrastive_temperature`` when set (one form shared by every such task, for like-for-like comparisons), else
    the task's own ``<task>_similarity`` / ``<task>_temperature`` (its paper's)."""
    similarity = settings.get("contrastive_similarity") or settings[similarity_key]
    temperature = settings.get("contrastive_temperature")
    return similarity, float(settings[temperature_key] if temperature is None else temperature)


def check_contrastive_form(settings: StageSettings) -> None:
    """``contrastive_similarity`` in :data:`SIMILARITIES` and ``contrastive_temperature`` > 0, when set."""
    if settings.get("contrastive_similarity") is not None:
        check_choice(settings, "contrastive_similarity", SIMILARITIES)
    if settings.get("contrastive_temperature") is not None:
        check_number(settings, "contrastive_temperature", 0, strict=True)


class InBatchContrastive(PretextTask):
    """Two views (B, d) of each sequence of a batch -> symmetric InfoNCE with in-batch negatives.

    Settings: ``<name>_temperature`` (> 0), ``<name>_similarity`` (dot | cos), both replaced by
    ``contrastive_temperature`` / ``contrastive_similarity`` when those are set. Subclasses implement :meth:`views`,
    which may also return per-sequence labels whose in-batch sharers are handled as ``same_label`` says.
    Validation statistics: ``loss``, ``acc_top1`` (share of the 2B anchors whose positive is ranked first among
    their in-batch candidates) and ``mean_cosine`` (between different users' u, the collapse signal).
    """

    min_batch_size = 2  # the negatives are the other sequences of the batch
    same_label = "keep"

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        self.similarity, self.temperature = contrastive_form(settings)

    @classmethod
    def check_settings(cls, settings):
        check_number(settings, "temperature", 0, strict=True)
        check_choice(settings, "similarity", SIMILARITIES)
        check_contrastive_form(settings)
        super().check_settings(settings)

    @classmethod
    def valid_metrics(cls, settings):
        return {"loss": False, "acc_top1": True}

    def views(self, encoder, item_seq, item_seq_len, generator=None):
        """``(u1, u2, labels)``: the two views' representations (B, d) and optional (B,) labels (or None)."""
        raise NotImplementedError

    def _logits(self, encoder, item_seq, item_seq_len, generator):
        u1, u2, labels = self.gather_batch(*self.views(encoder, item_seq, item_seq_len, generator))
        logits, positives = contrastive_logits(u1, u2, temperature=self.temperature, similarity=self.similarity,
                                               labels=labels, same_label=self.same_label)
        return logits, positives, u1

    def loss(self, encoder, item_seq, item_seq_len, generator=None):
        logits, positives, _ = self._logits(encoder, item_seq, item_seq_len, generator)
        return multi_positive_cross_entropy(logits, positives)

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        logits, positives, u1 = self._logits(encoder, item_seq, item_seq_len, generator)
        return {"loss": float(multi_positive_cross_entropy(logits, positives)),
                "acc_top1": float(top1_accuracy(logits, positives)),
                "mean_cosine": float(mean_offdiagonal_cosine(u1))}

    def check_start(self, statistics):
        return collapse_warning(self.name, statistics)

    def check_end(self, statistics):
        return collapse_warning(self.name, statistics, end=True)


# ------------------------------------------------------------------------------------------- the task
class CL4SRec(InBatchContrastive):
    name = "cl4srec"

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        self.augmenter = SequenceAugmenter.from_settings(settings, mask_token_id=n_items)

    @classmethod
    def check_settings(cls, settings):
        SequenceAugmenter.from_settings(settings, mask_token_id=1)  # operators and ratios: errors name the key
        super().check_settings(settings)

    def fit_data(self, dataset) -> None:
        """Operators that learn from the corpus (correlation-driven substitute/insert, if configured) fit here."""
        self.augmenter.fit_data(dataset)

    def views(self, encoder, item_seq, item_seq_len, generator=None):
        return (*encode_views(self.augmenter, encoder, item_seq, item_seq_len, generator), None)

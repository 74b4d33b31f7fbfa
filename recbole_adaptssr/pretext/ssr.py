"""``ssr``: augmentation-adaptive self-supervised ranking (AdaptSSR, Eq. 5-7), and its "w/o SSR" ablation.

Two explicit views f(S), g(S) per sequence (CL4SRec operators, :mod:`recbole_adaptssr.augment.sequence`); with
``ssr_ranking`` each view passes the encoder twice with independent dropout (the implicit augmentation), all four
views stacked in ONE forward pass (paper section 4.5), and the loss is :func:`recbole_adaptssr.losses.adaptssr_loss`.
``ssr_ranking: False`` is InfoNCE on the two explicit views (Eq. 9). The augmentation settings (``augmentations``,
``mask_ratio``, ``crop_ratio``, ``reorder_ratio``) are shared with other augmenting tasks and may be set for this
stage only as ``ssr_<key>``.
"""

from __future__ import annotations

import torch

from recbole_adaptssr.augment.sequence import SequenceAugmenter
from recbole_adaptssr.losses import (
    LAMBDA_ESTIMATES,
    LAMBDA_MODES,
    adaptssr_lambda,
    adaptssr_loss,
    ranking_accuracies,
)
from recbole_adaptssr.pretext.base import PretextTask, StageSettings

# mean fusion coefficient below which the ranking stage starts from nearly collapsed representations
COLLAPSE_LAMBDA = 0.05


class SSR(PretextTask):
    name = "ssr"
    min_batch_size = 2  # in-batch negatives come from other sequences

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        self.augmenter = SequenceAugmenter.from_settings(settings, mask_token_id=n_items)
        self.ranking = settings["ranking"]
        self.loss_options = dict(
            lambda_mode=settings["lambda_mode"],
            fixed_lambda=settings["fixed_lambda"],
            lambda_estimate=settings["lambda_estimate"],
            hard_negative=settings["hard_negative"],
            ranking=settings["ranking"],
            infonce_temperature=settings["infonce_temperature"],
        )

    @classmethod
    def check_settings(cls, settings):
        for key, allowed in (("lambda_mode", LAMBDA_MODES), ("lambda_estimate", LAMBDA_ESTIMATES)):
            if settings[key] not in allowed:
                raise ValueError(f"{settings.key(key)} must be one of {list(allowed)}, got {settings[key]!r}")
        for key in ("hard_negative", "ranking"):
            if not isinstance(settings[key], bool):
                raise ValueError(f"{settings.key(key)} must be True or False, got {settings[key]!r}")
        fixed = settings["fixed_lambda"]
        if isinstance(fixed, bool) or not isinstance(fixed, (int, float)) or not 0.0 <= fixed <= 1.0:
            raise ValueError(f"{settings.key('fixed_lambda')} must be a number in [0, 1], got {fixed!r}")
        temperature = settings["infonce_temperature"]
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"{settings.key('infonce_temperature')} must be a number > 0, got {temperature!r}")
        # the augmenter validates operators and ratios; build one to fail before pre-training
        SequenceAugmenter.from_settings(settings, mask_token_id=1)
        super().check_settings(settings)

    @classmethod
    def valid_metrics(cls, settings):
        if not settings["ranking"]:  # InfoNCE ablation: no implicit views, the ranking accuracies are undefined
            return {"loss": False}
        return {"loss": False, "acc_implicit": True, "acc_explicit": True}

    def fit_data(self, dataset) -> None:
        """Augmentation operators that learn from the corpus (e.g. correlation-driven substitution) fit here."""
        if hasattr(self.augmenter, "fit_data"):
            self.augmenter.fit_data(dataset)

    def views(self, encoder, item_seq, item_seq_len, generator=None):
        """u^, u^+, u~, u~+ (ranking) or u^, None, u~, None (InfoNCE), encoded in one forward pass."""
        pair = self.augmenter(item_seq, item_seq_len, generator=generator)
        if self.ranking:
            stacked = torch.cat([pair.seq_a, pair.seq_a, pair.seq_b, pair.seq_b], dim=0)
            return tuple(encoder(stacked).chunk(4, dim=0))
        u_hat, u_tilde = encoder(torch.cat([pair.seq_a, pair.seq_b], dim=0)).chunk(2, dim=0)
        return u_hat, None, u_tilde, None

    def loss(self, encoder, item_seq, item_seq_len, generator=None):
        # in-batch negatives (and lambda's batch estimate) over the global batch under torch.distributed
        return adaptssr_loss(*self.gather_batch(*self.views(encoder, item_seq, item_seq_len, generator)),
                             **self.loss_options)

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        views = self.views(encoder, item_seq, item_seq_len, generator)
        stats = {"loss": float(adaptssr_loss(*views, **self.loss_options))}
        if self.ranking:
            acc_implicit, acc_explicit = ranking_accuracies(*views)
            lam_hat, lam_tilde = adaptssr_lambda(
                *views, lambda_mode=self.loss_options["lambda_mode"], fixed_lambda=self.loss_options["fixed_lambda"],
                lambda_estimate=self.loss_options["lambda_estimate"],
            )
            stats.update(acc_implicit=acc_implicit, acc_explicit=acc_explicit,
                         **{"lambda": float((lam_hat.mean() + lam_tilde.mean()) / 2)})
        return stats

    def check_start(self, statistics):
        lam = statistics.get("lambda")
        if self.loss_options["lambda_mode"] == "adaptive" and lam is not None and lam < COLLAPSE_LAMBDA:
            return (
                f"[ssr] mean lambda {lam:.4f} < {COLLAPSE_LAMBDA}: the two augmented views are almost identical "
                "(cross-view cosine ~1), i.e. the user representations start nearly parallel. The ranking loss then "
                "starts near log 2 and may stay there; a warm-up that has not converged (see the mlm stage's "
                "validation) is the usual cause."
            )
        return None

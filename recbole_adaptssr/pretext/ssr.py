"""``ssr``: augmentation-adaptive self-supervised ranking (AdaptSSR, Eq. 5-7), and its "w/o SSR" ablation.

Two explicit views f(S), g(S) per sequence (CL4SRec operators, :mod:`recbole_adaptssr.augment.sequence`); with
``ssr_ranking`` each view passes the encoder twice with independent dropout (the implicit augmentation), all four
views stacked in ONE forward pass (paper section 4.5), and the loss is :func:`recbole_adaptssr.losses.adaptssr_loss`.
``ssr_ranking: False`` is InfoNCE on the two explicit views (Eq. 9; ``ssr_infonce_similarity``,
``ssr_infonce_temperature``, replaced by ``contrastive_similarity`` / ``contrastive_temperature`` when set). The
augmentation settings (``augmentations``,
``mask_ratio``, ``crop_ratio``, ``reorder_ratio``) are shared with other augmenting tasks and may be set for this
stage only as ``ssr_<key>``.
"""

from __future__ import annotations

import torch

from recbole_adaptssr.augment.sequence import SequenceAugmenter
from recbole_adaptssr.losses import (
    INFONCE_SIMILARITIES,
    LAMBDA_ESTIMATES,
    LAMBDA_MODES,
    adaptssr_lambda,
    adaptssr_loss,
    hard_ranking_constraints,
    ranking_accuracies,
)
from recbole_adaptssr.pretext.base import SAMPLES, PretextTask, StageSettings
from recbole_adaptssr.pretext.cl4srec import check_choice, check_contrastive_form, contrastive_form

# mean fusion coefficient below which the ranking stage starts from nearly collapsed representations
COLLAPSE_LAMBDA = 0.05


class SSR(PretextTask):
    name = "ssr"
    min_batch_size = 2  # in-batch negatives come from other sequences

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        self.augmenter = SequenceAugmenter.from_settings(settings, mask_token_id=n_items)
        self.ranking = settings["ranking"]
        similarity, temperature = contrastive_form(settings, "infonce_similarity", "infonce_temperature")
        self.loss_options = dict(
            lambda_mode=settings["lambda_mode"],
            fixed_lambda=settings["fixed_lambda"],
            lambda_estimate=settings["lambda_estimate"],
            hard_negative=settings["hard_negative"],
            ranking=settings["ranking"],
            infonce_temperature=temperature,
            infonce_similarity=similarity,
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
        check_choice(settings, "infonce_similarity", INFONCE_SIMILARITIES)
        check_contrastive_form(settings)
        # the augmenter validates operators and ratios; build one to fail before pre-training
        SequenceAugmenter.from_settings(settings, mask_token_id=1)
        super().check_settings(settings)

    @classmethod
    def valid_metrics(cls, settings):
        if not settings["ranking"]:  # InfoNCE ablation: no implicit views; the explicit hard constraint is top-1
            return {"loss": False, "hard_acc_explicit": True}
        return {"loss": False, "loss_fixed": False, "acc_implicit": True, "acc_explicit": True,
                "hard_acc_implicit": True, "hard_acc_explicit": True}

    def fit_data(self, dataset) -> None:
        """Augmentation operators that learn from the corpus (e.g. correlation-driven substitution) fit here."""
        if hasattr(self.augmenter, "fit_data"):
            self.augmenter.fit_data(dataset)

    def views(self, encoder, item_seq, item_seq_len, generator=None):
        """u^, u^+, u~, u~+ (ranking) or u^, None, u~, None (InfoNCE), encoded in one forward pass."""
        return self._augmented_views(encoder, item_seq, item_seq_len, generator)[1]

    def _augmented_views(self, encoder, item_seq, item_seq_len, generator=None):
        """(the augmented pair, with the operators drawn per sequence; the four representations of :meth:`views`)."""
        pair = self.augmenter(item_seq, item_seq_len, generator=generator)
        if self.ranking:
            stacked = torch.cat([pair.seq_a, pair.seq_a, pair.seq_b, pair.seq_b], dim=0)
            return pair, tuple(encoder(stacked).chunk(4, dim=0))
        u_hat, u_tilde = encoder(torch.cat([pair.seq_a, pair.seq_b], dim=0)).chunk(2, dim=0)
        return pair, (u_hat, None, u_tilde, None)

    def loss(self, encoder, item_seq, item_seq_len, generator=None):
        # in-batch negatives (and lambda's batch estimate) over the global batch under torch.distributed
        return adaptssr_loss(*self.gather_batch(*self.views(encoder, item_seq, item_seq_len, generator)),
                             **self.loss_options)

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        """``loss`` and ``hard_acc_explicit`` (for the InfoNCE ablation: the share of anchors u^ whose other view u~
        beats every other user's views). With the ranking task also the pairwise ``acc_implicit`` /
        ``acc_explicit``, the shares of anchors meeting Eq. 6 against the hardest candidates
        (``hard_acc_implicit``, ``hard_acc_explicit``), the loss at the fixed lambda ``ssr_fixed_lambda``
        (``loss_fixed``: comparable across epochs, as lambda moves) and, per sequence (summarised by
        :meth:`summarize_samples`), lambda, both hard constraints and the pair of augmentation operators that made
        its views."""
        pair, views = self._augmented_views(encoder, item_seq, item_seq_len, generator)
        stats = {"loss": float(adaptssr_loss(*views, **self.loss_options))}
        if not self.ranking:  # each explicit view is its own partner: the constraint is top-1 retrieval of u~ by u^
            u_hat, _, u_tilde, _ = views
            _, top1 = hard_ranking_constraints(u_hat, u_hat, u_tilde, u_tilde)
            stats["hard_acc_explicit"] = float(top1.float().mean())
            return stats
        batch = item_seq.size(0)
        acc_implicit, acc_explicit = ranking_accuracies(*views)
        hard_implicit, hard_explicit = (held.view(2, batch).float().mean(dim=0)  # per sequence: both anchors
                                        for held in hard_ranking_constraints(*views))
        lam_hat, lam_tilde = adaptssr_lambda(
            *views, lambda_mode=self.loss_options["lambda_mode"], fixed_lambda=self.loss_options["fixed_lambda"],
            lambda_estimate=self.loss_options["lambda_estimate"],
        )
        lam = (lam_hat + lam_tilde) / 2
        fixed = {**self.loss_options, "lambda_mode": "fixed"}
        stats.update(loss_fixed=float(adaptssr_loss(*views, **fixed)), acc_implicit=acc_implicit,
                     acc_explicit=acc_explicit, hard_acc_implicit=float(hard_implicit.mean()),
                     hard_acc_explicit=float(hard_explicit.mean()), **{"lambda": float(lam.mean())})
        stats[SAMPLES] = {"lambda": lam, "hard_acc_implicit": hard_implicit, "hard_acc_explicit": hard_explicit,
                          "pair": self._pair_index(pair)}
        return stats

    def _pair_index(self, pair) -> torch.Tensor:
        """(B,) index of each sequence's unordered operator pair {f, g} in :meth:`operator_pairs`."""
        n = len(self.augmenter.operators) + 1  # + "none" (-1: no operator applicable)
        a, b = pair.op_a.long() + 1, pair.op_b.long() + 1
        return torch.minimum(a, b) * n + torch.maximum(a, b)

    def operator_pairs(self) -> dict:
        """``{pair index: "f/g"}`` of every unordered pair of operators (``none``: the sequence unchanged)."""
        names = ["none", *self.augmenter.operators]
        return {i * len(names) + j: f"{names[i]}/{names[j]}" for i in range(len(names)) for j in range(i, len(names))}

    def summarize_samples(self, samples: dict) -> dict:
        """Lambda's quartiles over the validation sequences, and per operator pair (``by_pair``): the sequences,
        both hard-constraint shares and lambda's mean and quartiles."""
        if "lambda" not in samples:
            return {}
        out = _lambda_quartiles(samples["lambda"])
        by_pair = {}
        for index, name in self.operator_pairs().items():
            rows = samples["pair"] == index
            if not rows.any():
                continue
            by_pair[name] = {"n": int(rows.sum()),
                             "hard_acc_implicit": float(samples["hard_acc_implicit"][rows].mean()),
                             "hard_acc_explicit": float(samples["hard_acc_explicit"][rows].mean()),
                             "lambda": float(samples["lambda"][rows].mean()),
                             **_lambda_quartiles(samples["lambda"][rows])}
        return {**out, "by_pair": by_pair}

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


def _lambda_quartiles(values: torch.Tensor) -> dict:
    q = torch.quantile(values.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"lambda_q25": float(q[0]), "lambda_q50": float(q[1]), "lambda_q75": float(q[2])}

"""``barlow``: Barlow Twins on two augmented views of each user sequence (Liu et al., 2025, after Zbontar et al.,
ICML 2021).

Two views f(S), g(S) by the configured explicit augmentations (``augmentations`` and the operators' ``<op>_ratio``,
per stage as ``barlow_<key>``), encoded in one forward pass to u; a projector maps each view's u
(BatchNorm statistics per view, as Barlow Twins); the loss drives the cross-correlation matrix of the two
batch-standardised projections to the identity: on-diagonal to 1 (invariance to the augmentation), off-diagonal
to 0 weighted by ``barlow_lambda_offdiag`` (redundancy reduction), :func:`recbole_adaptssr.objectives.barlow_twins_loss`.
No negatives are needed. The projector follows Barlow Twins' shape (Linear-BN-ReLU blocks, a last Linear, no
biases) with the widths of ``barlow_projector`` (Barlow Twins: 8192-8192-8192 for a 2048-d ResNet; ours 256-wide
for d = 64); ``barlow_projector: []`` uses u itself. The projector belongs to the task and is not transferred.
"""

from __future__ import annotations

from torch import nn

from recbole_adaptssr.augment.sequence import SequenceAugmenter
from recbole_adaptssr.objectives import (
    barlow_twins_loss,
    contrastive_logits,
    cross_correlation,
    mean_offdiagonal_cosine,
    top1_accuracy,
)
from recbole_adaptssr.pretext.base import PretextTask, StageSettings
from recbole_adaptssr.pretext.cl4srec import check_number, collapse_warning, encode_views

#: mean on-diagonal cross-correlation below which the two views' projections are reported as unrelated
UNRELATED_ON_DIAGONAL = 0.05
BN_EPS = 1e-5  # BatchNorm's default, the standardisation of Barlow Twins' reference implementation


def projector(hidden_size: int, widths) -> nn.Module:
    """Barlow Twins' projector: (Linear, BatchNorm, ReLU) blocks then a Linear, without biases; Identity if empty."""
    layers, size = [], hidden_size
    for i, width in enumerate(widths):
        layers.append(nn.Linear(size, width, bias=False))
        if i < len(widths) - 1:
            layers += [nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        size = width
    return nn.Sequential(*layers) if layers else nn.Identity()


class Barlow(PretextTask):
    name = "barlow"
    min_batch_size = 2  # batch statistics standardise each dimension

    def __init__(self, settings: StageSettings, n_items: int, hidden_size: int):
        super().__init__(settings, n_items, hidden_size)
        self.augmenter = SequenceAugmenter.from_settings(settings, mask_token_id=n_items)
        self.projector = projector(hidden_size, [int(w) for w in settings["projector"]])
        self.lambda_offdiag = float(settings["lambda_offdiag"])

    @classmethod
    def check_settings(cls, settings):
        check_number(settings, "lambda_offdiag", 0)
        widths = settings["projector"]
        if not isinstance(widths, (list, tuple)) or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                                        for w in widths):
            raise ValueError(f"{settings.key('projector')} must be a list of layer widths (integers >= 1), "
                             f"got {widths!r}")
        SequenceAugmenter.from_settings(settings, mask_token_id=1)  # operators and ratios: errors name the key
        super().check_settings(settings)

    @classmethod
    def valid_metrics(cls, settings):
        return {"loss": False, "acc_top1": True}

    def fit_data(self, dataset) -> None:
        self.augmenter.fit_data(dataset)

    def _forward(self, encoder, item_seq, item_seq_len, generator):
        u1, u2 = encode_views(self.augmenter, encoder, item_seq, item_seq_len, generator)
        z1, z2 = self.projector(u1), self.projector(u2)
        return u1, u2, z1, z2

    def loss(self, encoder, item_seq, item_seq_len, generator=None):
        _, _, z1, z2 = self._forward(encoder, item_seq, item_seq_len, generator)
        z1, z2 = self.gather_batch(z1, z2)  # the batch statistics of the global batch under torch.distributed
        return barlow_twins_loss(z1, z2, self.lambda_offdiag, BN_EPS)

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        """``loss``; ``acc_top1``: share of views whose other view has the most similar u (cosine) among the other
        view's batch; ``on_diag``: mean on-diagonal cross-correlation; ``mean_cosine`` between users' u."""
        u1, u2, z1, z2 = self._forward(encoder, item_seq, item_seq_len, generator)
        retrieval = contrastive_logits(u1, u2, similarity="cos", negatives="other_view")
        return {"loss": float(barlow_twins_loss(z1, z2, self.lambda_offdiag, BN_EPS)),
                "acc_top1": float(top1_accuracy(*retrieval)),
                "on_diag": float(cross_correlation(z1, z2, BN_EPS).diagonal().mean()),
                "mean_cosine": float(mean_offdiagonal_cosine(u1))}

    def check_start(self, statistics):
        warning = collapse_warning(self.name, statistics)
        on_diag = statistics.get("on_diag")
        if warning is None and on_diag is not None and on_diag < UNRELATED_ON_DIAGONAL:
            warning = (f"[{self.name}] mean on-diagonal cross-correlation {on_diag:.4f} < {UNRELATED_ON_DIAGONAL}: the "
                       "two views' projections start unrelated (or constant over the batch), so the invariance term "
                       "has nothing to align; check the augmentation strength and the previous stage.")
        return warning

    def check_end(self, statistics):
        return collapse_warning(self.name, statistics, end=True)

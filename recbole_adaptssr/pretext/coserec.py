"""``coserec``: CoSeRec's contrastive pre-training (Liu et al., "Contrastive Self-supervised Sequential
Recommendation with Robust Augmentation", 2021) on the user representation u.

Two views of each sequence, each made by one operator drawn uniformly from CoSeRec's five (crop, mask, reorder, and
the correlation-aware substitute and insert, :mod:`recbole_adaptssr.augment.sequence`), with CoSeRec's short-sequence
rule (a sequence of at most ``coserec_short_seq_threshold`` = 4 behaviours draws only insert, substitute or mask),
both encoded in one forward pass, and symmetric InfoNCE with the 2(B-1) other augmented sequences of the batch as
negatives: CL4SRec's task (:class:`recbole_adaptssr.pretext.cl4srec.CL4SRec`) with CoSeRec's augmentations. The
correlated items come from the training split (ItemCF-IUF, CoSeRec's default offline similarity), fitted before the
stage trains.

Deviations (docs/pretext-tasks-b.md): CoSeRec trains the contrastive loss jointly with next-item prediction, on the
flattened hidden states of all positions, and after 160 epochs switches to a hybrid similarity that also uses the
model's own item embeddings; its mask writes the padding id. Here the task is pure pre-training on the attention-pooled
u of the shared user model, the similarity stays the offline ItemCF-IUF, and mask writes the learned mask token.
"""

from __future__ import annotations

from recbole_adaptssr.pretext.cl4srec import CL4SRec


class CoSeRec(CL4SRec):
    """CL4SRec's task (two views, in-batch InfoNCE; its augmenter reads every augmentation setting of the stage, and
    its ``fit_data`` fits the item correlations) with CoSeRec's augmentation settings (``coserec.yaml``)."""

    name = "coserec"

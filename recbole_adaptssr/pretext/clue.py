"""``clue``: CLUE's contrastive pre-training on implicitly augmented views (Cheng et al., ICDM 2021).

The same, unaugmented sequence passes the encoder twice (stacked along the batch: one forward pass) with
independent dropout masks -- the implicit augmentation -- and the two pooled representations u, u+ are contrasted
with symmetric InfoNCE against the other sequences of the batch (:func:`recbole_adaptssr.objectives.info_nce`).
CLUE also studies explicit augmentations (crop/mask/reorder views); the AdaptSSR comparison (Table 2) runs CLUE
as "solely implicitly augmented views", which this task follows; the explicit-view variant is the ``cl4srec``
task. The dropout is the user model's (``hidden_dropout_prob``, ``attn_dropout_prob``; per stage as
``clue_hidden_dropout_prob``, ...). See docs/pretext-tasks-a.md for what differs from the paper.
"""

from __future__ import annotations

import torch

from recbole_adaptssr.pretext.cl4srec import InBatchContrastive


class CLUE(InBatchContrastive):
    name = "clue"

    def views(self, encoder, item_seq, item_seq_len, generator=None):
        u1, u2 = encoder(torch.cat([item_seq, item_seq], dim=0)).chunk(2, dim=0)
        return u1, u2, None

"""``user_model: BERT4Rec``: the layers of RecBole's ``BERT4Rec`` (Sun et al., CIKM 2019) as a user model.

RecBole's BERT4Rec is SASRec's layers with a bidirectional attention mask and a mask token as item ``n_items``,
which is exactly how this package's item table is laid out. So this backbone is the paper's Eq. 2 encoder in
RecBole's BERT4Rec module layout, with any readout (``user_model_pooling``; RecBole's BERT4Rec appends a mask
token and reads out that last position; ``last`` here is the last valid behaviour). Settings: the general ones
(RecBole's BERT4Rec defaults equal them except dropout 0.2 / 0.2: the pipeline's per-stage dropout applies);
``bert4rec_<key>`` overrides one for this backbone only. RecBole's BERT4Rec training objective (its Cloze task,
``mask_ratio`` 0.2) is the ``mlm`` pretext task here.
"""

from __future__ import annotations

from recbole_adaptssr.encoder.sasrec import SelfAttentionEncoder


class BERT4Rec(SelfAttentionEncoder):
    """BERT4Rec's self-attention layers with the bidirectional mask."""

    name = "BERT4Rec"
    bidirectional = True

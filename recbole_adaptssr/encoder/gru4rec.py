"""``user_model: GRU4Rec``: the layers of RecBole's ``GRU4Rec`` (Hidasi et al., ICLR 2016; Tan et al., 2016) as a
user model.

As ``recbole.model.sequential_recommender.gru4rec.GRU4Rec``: item embeddings (size ``hidden_size``, RecBole's
``embedding_size``), embedding dropout, ``torch.nn.GRU`` (no bias, batch first) with a recurrent state of
``gru4rec_hidden_size`` (RecBole's ``hidden_size``: 128) over ``gru4rec_num_layers`` layers (1), and a dense layer
back to ``hidden_size``; xavier-normal item embeddings and xavier-uniform GRU input/recurrent weights of the first
layer, as RecBole initialises them. The GRU reads left to right, so it is causal: padding after the last
behaviour changes no hidden state of a behaviour.

Deviations from RecBole's GRU4Rec (docs/backbones.md): the item table has a mask-token row (``n_items``); the
readout is ``user_model_pooling`` (attention by default; ``last`` is RecBole's readout); the embedding dropout is
the pipeline's per-stage ``hidden_dropout_prob`` (RecBole's ``dropout_prob``: 0.3), and ``attn_dropout_prob`` has
nothing to act on.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.init import xavier_normal_, xavier_uniform_

from recbole_adaptssr.encoder.base import SequenceEncoder
from recbole_adaptssr.encoder.pooling import build_pooling


class GRU4Rec(SequenceEncoder):
    """GRU4Rec's embedding, GRU and dense layers, then the readout."""

    name = "GRU4Rec"
    positive_int_keys = ("hidden_size", "num_layers")
    # hidden_size here is RecBole's: the GRU's state size (gru4rec_hidden_size); the embedding size is shared
    shared_keys = ("embedding_size",)

    def __init__(self, n_items: int, max_seq_length: int, hidden_size: int = 64, gru_hidden_size: int = 128,
                 num_layers: int = 1, hidden_dropout_prob: float = 0.1, initializer_range: float = 0.02,
                 pooling: str = "attention"):
        super().__init__(n_items, max_seq_length, pooling)
        self.item_embedding = nn.Embedding(n_items + 1, hidden_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(hidden_dropout_prob)
        self.gru_layers = nn.GRU(input_size=hidden_size, hidden_size=gru_hidden_size, num_layers=num_layers,
                                 bias=False, batch_first=True)
        self.dense = nn.Linear(gru_hidden_size, hidden_size)
        self.apply(self._init_weights)
        self.pooling = build_pooling(pooling, hidden_size, initializer_range)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """RecBole's GRU4Rec initialisation (the dense layer keeps torch's default, as there)."""
        if isinstance(module, nn.Embedding):
            xavier_normal_(module.weight)
        elif isinstance(module, nn.GRU):
            xavier_uniform_(module.weight_hh_l0)
            xavier_uniform_(module.weight_ih_l0)

    @classmethod
    def from_config(cls, config, n_items: int, max_seq_length: int) -> "GRU4Rec":
        settings = cls.settings(config)
        return cls(n_items=n_items, max_seq_length=max_seq_length, hidden_size=config["hidden_size"],
                   gru_hidden_size=settings["hidden_size"], num_layers=settings["num_layers"],
                   hidden_dropout_prob=settings["hidden_dropout_prob"],
                   initializer_range=settings["initializer_range"], pooling=config["user_model_pooling"] or "attention")

    def encode(self, item_seq: torch.Tensor) -> tuple:
        self.check_length(item_seq)
        valid = item_seq != 0
        output, _ = self.gru_layers(self.emb_dropout(self.item_embedding(item_seq)))
        return self.dense(output), valid

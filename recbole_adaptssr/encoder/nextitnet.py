"""``user_model: NextItNet``: the layers of RecBole's ``NextItNet`` (Yuan et al., WSDM 2019) as a user model.

As ``recbole.model.sequential_recommender.nextitnet.NextItNet``: item embeddings (size ``hidden_size``, RecBole's
``embedding_size``), a stack of RecBole's own ``ResidualBlock_b`` (two dilated causal 1-D convolutions with
LayerNorm and ReLU, imported from RecBole) with dilations ``nextitnet_dilations * nextitnet_block_num``
([1, 4] x 5 = 10 blocks), kernel ``nextitnet_kernel_size`` (3), then RecBole's final linear layer, applied at
every position; RecBole's initialisation (uniform(+-sqrt(1 / n_items)) embeddings, xavier-normal linear weights
with bias 0.1, torch's default for the convolutions). The convolutions pad on the left only, so the model is
causal: padding after the last behaviour changes no hidden state of a behaviour.

Deviations from RecBole's NextItNet (docs/backbones.md): the item table has a mask-token row (``n_items``); the
readout is ``user_model_pooling`` (attention by default; RecBole reads the hidden state at position L - 1, which
for its right-padded sequences is a padding position unless the sequence is full: ``last`` here is the last valid
behaviour); RecBole's NextItNet has no dropout, but the pipeline's implicit augmentation needs one: a dropout of
``hidden_dropout_prob`` on the item embeddings (as GRU4Rec's); RecBole's L2 term on the residual blocks
(``reg_weight`` 1e-5) is not added to the pretext losses (use ``weight_decay``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.init import constant_, uniform_, xavier_normal_

from recbole_adaptssr.encoder.base import SequenceEncoder
from recbole_adaptssr.encoder.pooling import build_pooling

# importing RecBole's sequential_recommender package runs sine.py, which turns on autograd anomaly detection for
# the whole process (see recbole_adaptssr.compat): keep whatever state was there before
_anomaly = torch.is_anomaly_enabled()
from recbole.model.sequential_recommender.nextitnet import ResidualBlock_b  # noqa: E402

torch.autograd.set_detect_anomaly(_anomaly)


class NextItNet(SequenceEncoder):
    """NextItNet's embedding, residual blocks and final layer, then the readout."""

    name = "NextItNet"
    positive_int_keys = ("kernel_size", "block_num")

    def __init__(self, n_items: int, max_seq_length: int, hidden_size: int = 64, kernel_size: int = 3,
                 block_num: int = 5, dilations=(1, 4), hidden_dropout_prob: float = 0.1,
                 initializer_range: float = 0.02, pooling: str = "attention"):
        super().__init__(n_items, max_seq_length, pooling)
        self.item_embedding = nn.Embedding(n_items + 1, hidden_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(hidden_dropout_prob)
        self.residual_blocks = nn.Sequential(*[
            ResidualBlock_b(hidden_size, hidden_size, kernel_size=kernel_size, dilation=dilation)
            for dilation in list(dilations) * block_num
        ])
        self.final_layer = nn.Linear(hidden_size, hidden_size)
        self.apply(self._init_weights)
        self.pooling = build_pooling(pooling, hidden_size, initializer_range)

    def _init_weights(self, module: nn.Module) -> None:
        """RecBole's NextItNet initialisation."""
        if isinstance(module, nn.Embedding):
            bound = math.sqrt(1.0 / self.n_items)
            uniform_(module.weight.data, -bound, bound)
        elif isinstance(module, nn.Linear):
            xavier_normal_(module.weight.data)
            if module.bias is not None:
                constant_(module.bias.data, 0.1)

    @classmethod
    def check_settings(cls, config) -> None:
        super().check_settings(config)
        settings = cls.settings(config)
        dilations = settings["dilations"]
        if (not isinstance(dilations, list) or not dilations
                or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dilations)):
            raise ValueError(f"{settings.key('dilations')} must be a non-empty list of integers >= 1, got {dilations!r}")

    @classmethod
    def from_config(cls, config, n_items: int, max_seq_length: int) -> "NextItNet":
        settings = cls.settings(config)
        return cls(n_items=n_items, max_seq_length=max_seq_length, hidden_size=config["hidden_size"],
                   kernel_size=settings["kernel_size"], block_num=settings["block_num"],
                   dilations=settings["dilations"], hidden_dropout_prob=settings["hidden_dropout_prob"],
                   initializer_range=settings["initializer_range"], pooling=config["user_model_pooling"] or "attention")

    def encode(self, item_seq: torch.Tensor) -> tuple:
        self.check_length(item_seq)
        valid = item_seq != 0
        hidden = self.residual_blocks(self.emb_dropout(self.item_embedding(item_seq)))
        return self.final_layer(hidden), valid

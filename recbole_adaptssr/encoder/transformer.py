"""``user_model: transformer`` (the default): the paper's user model of Eq. 2-4,
:class:`~recbole_adaptssr.encoder.user_model.UserModel` (item + position embeddings, RecBole's bidirectional
``TransformerEncoder``, attention pooling with one learnable query).

It is registered as it is: same layers, same initialisation order, same state dict (no checkpoint record, which is
how a state dict without one is recognised as this model). Its readout is Eq. 3-4, so ``user_model_pooling`` must
be ``attention``; ``BERT4Rec`` is the same bidirectional Transformer with any readout.
"""

from __future__ import annotations

from torch import nn

from recbole_adaptssr.encoder.base import SequenceEncoder
from recbole_adaptssr.encoder.fused_transformer import check_encoder_kernel
from recbole_adaptssr.encoder.user_model import UserModel


class Transformer(UserModel, SequenceEncoder):
    """The paper's user model (Eq. 2-4) as the ``transformer`` backbone. Settings: ``n_layers``, ``n_heads``,
    ``inner_size``, ``hidden_act``, ``layer_norm_eps``, ``initializer_range``, ``encoder_kernel``
    (``transformer_<key>`` overrides)."""

    name = "transformer"
    poolings = ("attention",)
    # the default records no identity: its state dict stays exactly UserModel's
    get_extra_state = nn.Module.get_extra_state
    set_extra_state = nn.Module.set_extra_state

    @classmethod
    def check_settings(cls, config) -> None:
        super().check_settings(config)
        settings = cls.settings(config)
        check_encoder_kernel(settings.get("encoder_kernel", "eager"), settings.key("encoder_kernel"))

    @classmethod
    def from_config(cls, config, n_items: int, max_seq_length: int) -> "Transformer":
        settings = cls.settings(config)
        return cls(
            n_items=n_items,
            max_seq_length=max_seq_length,
            hidden_size=config["hidden_size"],
            n_layers=settings["n_layers"],
            n_heads=settings["n_heads"],
            inner_size=settings["inner_size"],
            hidden_dropout_prob=settings["hidden_dropout_prob"],
            attn_dropout_prob=settings["attn_dropout_prob"],
            hidden_act=settings["hidden_act"],
            layer_norm_eps=settings["layer_norm_eps"],
            initializer_range=settings["initializer_range"],
            encoder_kernel=settings.get("encoder_kernel", "eager"),
        )

"""User models (behaviour-sequence encoders) as plug-ins, found by name: the ``user_model`` setting.

AdaptSSR is decoupled from the user model (paper section 3): every pretext task and downstream head reaches the
encoder only through this interface, which every backbone provides:

* ``encoder(item_seq) -> u`` (B, d): the user representations, ``pooling(*encode(item_seq))``;
* ``encoder.encode(item_seq) -> (hidden (B, L, d), valid (B, L) bool)``: per-position hidden states (MLM, IDICL);
* ``encoder.pooling(hidden, valid) -> (B, d)``: the readout (``user_model_pooling``: attention (Eq. 3-4), last, mean);
* ``encoder.item_embedding``: ``n_items + 1`` rows; row 0 is padding, row ``n_items`` the learned mask token
  (``encoder.mask_token_id``; MLM and the mask augmentation write that id); MLM/PTUM tie their output to its rows;
* ``encoder.n_items``, ``encoder.max_seq_length`` (a longer input is an error naming MAX_ITEM_LIST_LENGTH);
* ``encoder.set_dropout(hidden_dropout_prob, attn_dropout_prob)``: the per-stage dropout (the implicit
  augmentation); ``attn_dropout_prob`` reaches every dropout module whose name ends in ``attn_dropout``.

A backbone is one module ``recbole_adaptssr/encoder/<name lower-cased>.py`` holding a :class:`SequenceEncoder`
subclass whose ``name`` is the value of ``user_model`` (RecBole's model name: ``SASRec``, ``GRU4Rec``, ...), and
one YAML of defaults ``recbole_adaptssr/properties/encoder/<name>.yaml`` whose keys all start with
``<name lower-cased>_``. Its settings are read through a :class:`~recbole_adaptssr.pretext.base.StageSettings`
view with that prefix: ``gru4rec_num_layers`` if defined, else ``num_layers`` (as ``<stage>_<key>`` works for
pre-training stages). ``hidden_size`` is the user representation's size d, shared by every backbone and the heads.

Checkpoints record the backbone: a backbone's state dict carries its identity (name and pooling) as extra state
(``user_model._extra_state``, a uint8 tensor of ``"<name>|<pooling>"``, so checksums, ``weights_only`` loading and
state-dict copies treat it as any tensor). The default ``transformer`` (the paper's Eq. 2-4 model) records nothing,
so its state dict is exactly what it always was; a state dict without a record holds the transformer.
:func:`check_pretrained` turns a mismatch into an error naming both backbones before any weight is copied.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from recbole_adaptssr.encoder.pooling import POOLINGS
from recbole_adaptssr.plugins import Registry, check_plugin_namespace, did_you_mean, plugin_defaults_file
from recbole_adaptssr.setting_errors import as_setting_errors

DEFAULT_USER_MODEL = "transformer"
DEFAULT_POOLING = "attention"
EXTRA_STATE_KEY = "_extra_state"


def _unknown_backbone(name, registry) -> str:
    known = sorted(set(builtin_user_models()) | set(registry))
    return f"unknown user_model {name!r}; known: {known}" + did_you_mean(name, known, cutoff=0.5, fold_case=True)


#: the backbones by name (``user_model``; module ``recbole_adaptssr.encoder.<name lower-cased>``)
USER_MODELS = Registry("user_model", package=__package__, module_name=str.lower,
                       not_plugins=("base", "fused_transformer", "pooling", "user_model"), unknown=_unknown_backbone)


class SequenceEncoder(nn.Module):
    """Base class of a user model (see the module docstring). Subclasses set ``name``, build their layers and
    ``self.pooling`` in ``__init__``, and implement :meth:`encode` and :meth:`from_config`."""

    name: ClassVar[str] = ""
    #: the backbone's own settings that must be integers >= 1 (checked by :meth:`check_settings`)
    positive_int_keys: ClassVar[tuple] = ()
    #: YAML of the backbone's defaults; ``None`` means ``properties/encoder/<name>.yaml`` of this package.
    config_file: ClassVar[str | None] = None
    #: readouts this backbone supports (``user_model_pooling``)
    poolings: ClassVar[tuple] = POOLINGS
    #: general settings this backbone must not have a ``<prefix>_<key>`` for (shared with the heads)
    shared_keys: ClassVar[tuple] = ("hidden_size", "embedding_size")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            USER_MODELS[cls.name] = cls

    def __init__(self, n_items: int | None = None, max_seq_length: int | None = None, pooling: str = DEFAULT_POOLING):
        super().__init__()
        if pooling not in self.poolings:
            raise ValueError(f"user_model_pooling must be one of {list(self.poolings)} for user_model={self.name}, "
                             f"got {pooling!r}")
        self.pooling_kind = pooling
        if n_items is not None:
            if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 2:
                raise ValueError(f"n_items must be an integer >= 2 (id 0 is padding), got {n_items!r}")
            self.n_items = n_items
            self.mask_token_id = n_items
        if max_seq_length is not None:
            self.max_seq_length = int(max_seq_length)

    # ------------------------------------------------------------------ settings
    @classmethod
    def prefix(cls) -> str:
        """The namespace of this backbone's own settings: ``<name lower-cased>``."""
        return cls.name.lower()

    @classmethod
    def settings(cls, config):
        """The settings view: ``<prefix>_<key>`` when it is defined, else ``<key>``."""
        from recbole_adaptssr.pretext.base import StageSettings

        return StageSettings(config, cls.prefix())

    @classmethod
    def check_settings(cls, config) -> None:
        """Raise ``ValueError`` naming the key for a bad setting (called before anything trains)."""
        for key in cls.shared_keys:
            if config[f"{cls.prefix()}_{key}"] is not None:
                raise ValueError(f"{cls.prefix()}_{key} cannot be set: the user model's {key} is hidden_size, "
                                 "shared by every backbone and the heads (set hidden_size)")
        settings = cls.settings(config)
        for key in cls.positive_int_keys:
            value = settings[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{settings.key(key)} must be an integer >= 1, got {value!r}")
        pooling = configured_pooling(config)
        if pooling not in cls.poolings:
            raise ValueError(f"user_model_pooling must be one of {list(cls.poolings)} for user_model={cls.name}, "
                             f"got {pooling!r}")

    @classmethod
    def from_config(cls, config, n_items: int, max_seq_length: int) -> "SequenceEncoder":
        raise NotImplementedError

    # ------------------------------------------------------------------ the encoder interface
    @property
    def identity(self) -> tuple:
        """``(user_model, pooling)``: what a checkpoint of this encoder records."""
        return self.name, self.pooling_kind

    def check_length(self, item_seq: torch.Tensor) -> None:
        if item_seq.size(1) > self.max_seq_length:
            raise ValueError(
                f"sequence length {item_seq.size(1)} exceeds MAX_ITEM_LIST_LENGTH={self.max_seq_length}"
            )

    def encode(self, item_seq: torch.Tensor) -> tuple:
        """(B, L) item ids -> hidden states (B, L, d) and the (B, L) bool mask of valid positions."""
        raise NotImplementedError

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        """(B, L) item ids -> (B, d) user representations."""
        hidden, valid = self.encode(item_seq)
        return self.pooling(hidden, valid)

    def set_dropout(self, hidden_dropout_prob: float, attn_dropout_prob: float) -> None:
        """Set every dropout module: ``attn_dropout_prob`` for attention probabilities (names ending in
        ``attn_dropout``), ``hidden_dropout_prob`` for the others (per-stage settings)."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Dropout):
                module.p = float(attn_dropout_prob if name.endswith("attn_dropout") else hidden_dropout_prob)

    # ------------------------------------------------------------------ the checkpoint record
    def get_extra_state(self):
        return encode_identity(*self.identity)

    def set_extra_state(self, state) -> None:
        theirs = decode_identity(state)
        if theirs != self.identity:
            raise ValueError(mismatch_message(theirs, self.identity, "the state dict"))


def configured_pooling(config) -> str:
    """``user_model_pooling`` (unset: attention, Eq. 3-4)."""
    pooling = config["user_model_pooling"]
    return DEFAULT_POOLING if pooling is None else pooling


# ---------------------------------------------------------------------------------------------- identity
def encode_identity(name: str, pooling: str) -> torch.Tensor:
    return torch.tensor(list(f"{name}|{pooling}".encode()), dtype=torch.uint8)


def decode_identity(state) -> tuple:
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or state.dim() != 1:
        raise ValueError(f"not a user-model record: {state!r}")
    name, _, pooling = bytes(state.tolist()).decode().partition("|")
    return name, pooling


def weights_identity(weights: dict) -> tuple:
    """``(user_model, pooling)`` of a user model's state dict (keys without the ``user_model.`` prefix)."""
    record = weights.get(EXTRA_STATE_KEY)
    return (DEFAULT_USER_MODEL, DEFAULT_POOLING) if record is None else decode_identity(record)


def checkpoint_identity(state: dict) -> tuple:
    """``(user_model, pooling)`` of a stage checkpoint (its ``state_dict`` of a whole model)."""
    return weights_identity({EXTRA_STATE_KEY: state["state_dict"][f"user_model.{EXTRA_STATE_KEY}"]}
                            if f"user_model.{EXTRA_STATE_KEY}" in state.get("state_dict", {}) else {})


def mismatch_message(theirs: tuple, ours: tuple, source: str) -> str:
    return (f"{source} holds user model {theirs[0]!r} with {theirs[1]} pooling, but this run builds "
            f"user_model={ours[0]} with user_model_pooling={ours[1]}: a checkpoint is fine-tuned with the user model "
            f"it was pre-trained with (set user_model={theirs[0]} user_model_pooling={theirs[1]})")


def check_pretrained(encoder: nn.Module, weights: dict, source: str = "the checkpoint") -> None:
    """Raise ``ValueError`` when ``weights`` (a user model's state dict) hold another backbone or pooling."""
    theirs, ours = weights_identity(weights), encoder.identity
    if theirs != ours:
        raise ValueError(mismatch_message(theirs, ours, source))


def check_checkpoint(config, state: dict, source: str) -> None:
    """The checkpoint ``state`` (a stage checkpoint) holds the backbone and pooling ``config`` asks for."""
    theirs = checkpoint_identity(state)
    ours = (str(config["user_model"] or DEFAULT_USER_MODEL), configured_pooling(config))
    if theirs != ours:
        raise ValueError(mismatch_message(theirs, ours, source))


# ---------------------------------------------------------------------------------------------- registry
def builtin_user_models() -> list:
    """Names of the backbones shipped in this package (the backbone modules of this folder)."""
    USER_MODELS.import_builtins()
    return sorted(name for name, cls in USER_MODELS.items() if cls.__module__.startswith(__package__ + "."))


def get_user_model(name) -> type:
    """The :class:`SequenceEncoder` subclass called ``name`` (the ``user_model`` setting): already imported, else
    ``recbole_adaptssr.encoder.<name lower-cased>``. An unknown name is an error with the closest known names."""
    with as_setting_errors():  # the name is a setting's value
        return USER_MODELS.lookup(name)


def defaults_file(encoder_class: type) -> str | None:
    """The YAML of a backbone's defaults (a built-in backbone must have one)."""
    return plugin_defaults_file(encoder_class, __package__, "encoder", "user_model")


def check_defaults_namespace(encoder_class: type, defaults: dict, path: str) -> None:
    """A backbone's YAML may only define keys of its own namespace ``<prefix>_...``."""
    check_plugin_namespace(defaults, encoder_class.prefix(), f"user_model {encoder_class.name!r}", path)


def check_user_model(config) -> None:
    """``user_model`` names a known backbone and its settings (and ``user_model_pooling``) are valid."""
    get_user_model(config["user_model"] or DEFAULT_USER_MODEL).check_settings(config)


def build_user_model(config, n_items: int, max_seq_length: int) -> nn.Module:
    """The backbone ``config["user_model"]`` built from its settings."""
    encoder_class = get_user_model(config["user_model"] or DEFAULT_USER_MODEL)
    encoder_class.check_settings(config)
    return encoder_class.from_config(config, n_items, max_seq_length)

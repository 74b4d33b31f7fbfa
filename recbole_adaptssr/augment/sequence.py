"""Explicit sequence augmentations, batched: the CL4SRec operators, CoSeRec's two, and a registry of operators.

The operators act on the valid (non-padding) part of a behaviour sequence of length ``n``:

* ``crop``       keeps a random contiguous window of ``ceil(crop_ratio * n)`` items and moves it to the front;
* ``mask``       replaces ``min(ceil(mask_ratio * n), n - 1)`` distinct random positions with a mask token
                 (never all of them; a sequence of length 1 is left unchanged);
* ``reorder``    randomly permutes one random contiguous window of ``ceil(reorder_ratio * n)`` items;
* ``substitute`` replaces ``ceil(substitute_ratio * n)`` distinct random positions by an item correlated with the
                 item there (CoSeRec);
* ``insert``     inserts, right before each of ``ceil(insert_ratio * n)`` distinct random positions, an item
                 correlated with the item there, and keeps the most recent ``L`` items (CoSeRec).

The first three are those of CL4SRec (Xie et al., "Contrastive Learning for Sequential Recommendation", ICDE
2022), which AdaptSSR uses as its explicit augmentations; ``substitute`` and ``insert`` are CoSeRec's (Liu et al.,
"Contrastive Self-supervised Sequential Recommendation with Robust Augmentation", 2021). The correlated items come
from a table fitted on the training corpus (:mod:`recbole_adaptssr.augment.correlation`, item co-occurrence; CoSeRec's
ItemCF-IUF by default): :meth:`SequenceAugmenter.fit_data`. Substitute and insert only choose positions whose item
has a correlated item (an item never seen in training has none), so they change ``min(k, m)`` positions, ``m`` the
number of such positions; the replacement or inserted item is drawn uniformly from the item's top-k correlated
items (k = 1: the most correlated one, as CoSeRec).

Mask works at the embedding level: masked positions take the id ``mask_token_id``, a dedicated row of
the item embedding table whose embedding is learned. That row is owned by the model (it sizes its item
embedding table to include it); this module only writes the id.

Sequence layout is RecBole's: ``item_seq`` is a ``LongTensor (B, L)`` with the valid items (ids >= 1) at
positions ``[0, n_b)`` and padding id 0 at positions ``>= n_b``; ``item_seq_len`` is a ``LongTensor (B,)``
with ``1 <= n_b <= L``. Every function works on the whole batch with tensor operations (no per-sample
Python loop), on the device of ``item_seq``, returns new tensors and never modifies its inputs. All
randomness is drawn from the optional ``torch.Generator`` argument (which must live on the same device as
``item_seq``), so a seeded generator gives reproducible views.

Counts: ``k = ceil(ratio * n)`` is computed in float64 as ``ceil(ratio * n - 1e-6)``. The epsilon absorbs
floating-point error in the product (``0.6 * 5 == 3.0000000000000004`` must give 3, not 4); it cannot
change a genuine fractional result, whose distance to the next integer is far larger than 1e-6 for any
realistic ratio and sequence length. The result is then clamped to ``[1, n]``. (CL4SRec's and CoSeRec's code
floor the product, with at least 1 for substitute and insert; this package rounds up everywhere.)

Operators are plug-ins: :func:`register_operator` adds one (a function of the batch and its ratio, plus the ratio's
setting ``<name>_ratio``); :class:`SequenceAugmenter` draws among the registered operators it is configured with.
"""

from __future__ import annotations

from numbers import Real
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import torch

from recbole_adaptssr.augment.correlation import MEASURES, CorrelationTable, item_correlation
from recbole_adaptssr.plugins import Registry

__all__ = [
    "OPERATORS",
    "OPERATOR_REGISTRY",
    "SHORT_SEQ_OPERATORS",
    "AugmentOperator",
    "AugmentedPair",
    "SequenceAugmenter",
    "crop",
    "insert",
    "mask",
    "register_operator",
    "reorder",
    "substitute",
]

#: The default operators (CL4SRec's, AdaptSSR's default), in their canonical order.
OPERATORS: Tuple[str, ...] = ("mask", "crop", "reorder")
#: CoSeRec's operators for short sequences (its default ``augment_type_for_short: SIM``).
SHORT_SEQ_OPERATORS: Tuple[str, ...] = ("insert", "substitute", "mask")

_EPS = 1e-6


def _check_inputs(item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> None:
    if item_seq.dim() != 2:
        raise ValueError(f"item_seq must have shape (B, L), got shape {tuple(item_seq.shape)}")
    if item_seq_len.dim() != 1 or item_seq_len.shape[0] != item_seq.shape[0]:
        raise ValueError(
            f"item_seq_len must have shape (B,) = ({item_seq.shape[0]},), "
            f"got shape {tuple(item_seq_len.shape)}"
        )


def _ceil_count(ratio: float, n: torch.Tensor) -> torch.Tensor:
    """``clamp(ceil(ratio * n), 1, n)`` per row, robust to float error (see module docstring)."""
    k = torch.ceil(n.to(torch.float64) * float(ratio) - _EPS).long()
    return torch.minimum(k.clamp(min=1), n)


def _random_start(n: torch.Tensor, k: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """A start position drawn uniformly from ``[0, n - k]`` per row."""
    u = torch.rand(n.shape, generator=generator, device=n.device, dtype=torch.float64)
    span = (n - k + 1).to(torch.float64)
    return torch.minimum(torch.floor(u * span).long(), n - k)


def _choose_positions(eligible: torch.Tensor, k: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """(B, L) bool: ``k[b]`` distinct positions of row b, uniform among its ``eligible`` ones (``k <= #eligible``)."""
    scores = torch.rand(eligible.shape, generator=generator, device=eligible.device)
    # Ineligible positions sort after every eligible one, so the k lowest ranks are eligible positions.
    scores = torch.where(eligible, scores, torch.full_like(scores, 2.0))
    rank = torch.argsort(torch.argsort(scores, dim=1, stable=True), dim=1)
    return rank < k.unsqueeze(1)


def crop(
    item_seq: torch.Tensor,
    item_seq_len: torch.Tensor,
    ratio: float = 0.4,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Keep a random contiguous window of ``k = ceil(ratio * n)`` valid items, moved to the front.

    The window start is uniform in ``[0, n - k]``. Returns ``(seq, seq_len)`` with ``seq_len == k`` and
    padding 0 at positions ``>= k``.
    """
    _check_inputs(item_seq, item_seq_len)
    n = item_seq_len.to(device=item_seq.device, dtype=torch.long)
    _, L = item_seq.shape
    k = _ceil_count(ratio, n)
    start = _random_start(n, k, generator)
    pos = torch.arange(L, device=item_seq.device).unsqueeze(0)  # (1, L)
    src = (start.unsqueeze(1) + pos).clamp(max=L - 1)  # (B, L)
    gathered = item_seq.gather(1, src)
    keep = pos < k.unsqueeze(1)
    seq = torch.where(keep, gathered, torch.zeros_like(gathered))
    return seq, k


def mask(
    item_seq: torch.Tensor,
    item_seq_len: torch.Tensor,
    mask_token_id: int,
    ratio: float = 0.6,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Replace ``k = min(ceil(ratio * n), n - 1)`` distinct random valid positions with ``mask_token_id``.

    Never masks all positions (``n = 1`` gives ``k = 0``: the sequence is unchanged). Padding is
    untouched. Returns ``(seq, seq_len)`` with ``seq_len`` equal to the input lengths.
    """
    _check_inputs(item_seq, item_seq_len)
    n = item_seq_len.to(device=item_seq.device, dtype=torch.long)
    _, L = item_seq.shape
    k = torch.minimum(_ceil_count(ratio, n), n - 1)
    pos = torch.arange(L, device=item_seq.device).unsqueeze(0)
    masked = _choose_positions(pos < n.unsqueeze(1), k, generator)
    seq = torch.where(masked, torch.full_like(item_seq, int(mask_token_id)), item_seq)
    return seq, item_seq_len.clone()


def reorder(
    item_seq: torch.Tensor,
    item_seq_len: torch.Tensor,
    ratio: float = 0.6,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Randomly permute one random contiguous window of ``k = ceil(ratio * n)`` valid positions.

    The window start is uniform in ``[0, n - k]``; everything outside the window (padding included) is
    unchanged. Returns ``(seq, seq_len)`` with ``seq_len`` equal to the input lengths.
    """
    _check_inputs(item_seq, item_seq_len)
    n = item_seq_len.to(device=item_seq.device, dtype=torch.long)
    B, L = item_seq.shape
    k = _ceil_count(ratio, n)
    start = _random_start(n, k, generator)
    pos = torch.arange(L, device=item_seq.device).unsqueeze(0).expand(B, L)
    in_window = (pos >= start.unsqueeze(1)) & (pos < (start + k).unsqueeze(1))
    # Sort keys: outside positions keep key = position; window positions get key in [start, start + 0.5),
    # strictly between the last position before the window (start - 1) and the first after it
    # (start + k >= start + 1), so only the window is permuted, in the random order of its keys.
    u = torch.rand((B, L), generator=generator, device=item_seq.device, dtype=torch.float64)
    keys = torch.where(in_window, start.unsqueeze(1).to(torch.float64) + 0.5 * u, pos.to(torch.float64))
    perm = torch.argsort(keys, dim=1, stable=True)
    return item_seq.gather(1, perm), item_seq_len.clone()


def _correlated_prelude(item_seq, item_seq_len, correlated, ratio, generator):
    """What substitute and insert share: the chosen positions (k = ceil(ratio * n) among those whose item has a
    correlated item) and, at every position, one of its item's correlated items drawn uniformly."""
    _check_inputs(item_seq, item_seq_len)
    if correlated.dim() != 2 or correlated.shape[1] < 1:
        raise ValueError(f"correlated must be a (V, k) table of item ids, got shape {tuple(correlated.shape)}")
    n = item_seq_len.to(device=item_seq.device, dtype=torch.long)
    B, L = item_seq.shape
    correlated = correlated.to(item_seq.device)
    pos = torch.arange(L, device=item_seq.device).unsqueeze(0)
    valid = pos < n.unsqueeze(1)
    # ids outside the table (none in practice: it covers every item and the mask token) have no correlated item
    rows = torch.where((item_seq >= 0) & (item_seq < correlated.shape[0]), item_seq, torch.zeros_like(item_seq))
    n_correlated = (correlated != 0).sum(dim=1)[rows]  # (B, L)
    eligible = valid & (n_correlated > 0)
    k = torch.minimum(_ceil_count(ratio, n), eligible.sum(dim=1))
    chosen = _choose_positions(eligible, k, generator)
    u = torch.rand((B, L), generator=generator, device=item_seq.device, dtype=torch.float64)
    rank = torch.minimum(torch.floor(u * n_correlated.to(torch.float64)).long(), (n_correlated - 1).clamp(min=0))
    picked = correlated[rows, rank]
    return n, pos, valid, k, chosen, picked


def substitute(
    item_seq: torch.Tensor,
    item_seq_len: torch.Tensor,
    correlated: torch.Tensor,
    ratio: float = 0.1,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Replace ``min(ceil(ratio * n), m)`` distinct random valid positions by a correlated item (CoSeRec).

    ``correlated`` is a ``LongTensor (V, k)`` of item ids, row ``i`` the items correlated with item ``i``, padded
    with 0 (:class:`~recbole_adaptssr.augment.correlation.CorrelationTable`); ``m`` is the number of valid positions
    whose item has at least one; the replacement is drawn uniformly among them. Returns ``(seq, seq_len)`` with
    ``seq_len`` equal to the input lengths.
    """
    _, _, _, _, chosen, picked = _correlated_prelude(item_seq, item_seq_len, correlated, ratio, generator)
    return torch.where(chosen, picked, item_seq), item_seq_len.clone()


def insert(
    item_seq: torch.Tensor,
    item_seq_len: torch.Tensor,
    correlated: torch.Tensor,
    ratio: float = 0.4,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Insert a correlated item right before each of ``k = min(ceil(ratio * n), m)`` distinct random valid positions
    (CoSeRec inserts before the item), then keep the most recent ``L`` items (the width of ``item_seq``).

    ``correlated`` and ``m`` as in :func:`substitute`. Returns ``(seq, seq_len)`` with ``seq_len = min(n + k, L)``,
    left-aligned and 0-padded like the input.
    """
    n, pos, valid, k, chosen, picked = _correlated_prelude(item_seq, item_seq_len, correlated, ratio, generator)
    B, L = item_seq.shape
    # New index of the item at p: p plus the insertions at or before p; its inserted item goes right before it.
    shift = torch.cumsum(chosen.long(), dim=1)
    spill = 2 * L  # a column past every real destination (at most n + k - 1 <= 2L - 1) for what is not written
    dest_item = torch.where(valid, pos + shift, torch.full_like(shift, spill))
    dest_inserted = torch.where(chosen, pos + shift - 1, torch.full_like(shift, spill))
    grown = torch.zeros((B, 2 * L + 1), dtype=item_seq.dtype, device=item_seq.device)
    grown.scatter_(1, dest_item, item_seq)
    grown.scatter_(1, dest_inserted, picked)
    new_len = n + k
    drop = (new_len - L).clamp(min=0)  # the oldest items beyond L
    out_len = torch.minimum(new_len, torch.full_like(new_len, L))
    seq = grown.gather(1, pos + drop.unsqueeze(1))
    seq = torch.where(pos < out_len.unsqueeze(1), seq, torch.zeros_like(seq))
    return seq, out_len


# --------------------------------------------------------------------------------------------- operator registry
class AugmentOperator(NamedTuple):
    """A registered operator: ``apply(augmenter, item_seq, item_seq_len, ratio, generator) -> (seq, seq_len)``."""

    name: str
    apply: Callable[..., Tuple[torch.Tensor, torch.Tensor]]
    default_ratio: float
    min_length: int = 1  # shorter sequences never draw it
    needs_correlation: bool = False  # needs SequenceAugmenter.fit_data (the correlated items) before use


#: Operator name -> :class:`AugmentOperator`, in registration order.
OPERATOR_REGISTRY = Registry("augmentation operator")


def register_operator(name: str, default_ratio: float, min_length: int = 1, needs_correlation: bool = False):
    """Decorator registering ``fn(augmenter, item_seq, item_seq_len, ratio, generator) -> (seq, seq_len)`` as the
    operator ``name``, whose strength is the setting ``<name>_ratio`` (default ``default_ratio``).

    ``fn`` follows the module's contract (batched, seeded by ``generator``, valid part left-aligned, 0-padded, lengths
    in ``[1, L]``); ``augmenter`` gives it ``mask_token_id`` and, for ``needs_correlation``,
    ``augmenter.correlated_items(device)``. Sequences shorter than ``min_length`` never draw it.
    """
    _check_ratio(f"{name}_ratio", default_ratio)
    if name in OPERATOR_REGISTRY:
        raise ValueError(f"augmentation operator {name!r} is already registered")

    def decorate(fn):
        OPERATOR_REGISTRY.add(name, AugmentOperator(name, fn, float(default_ratio), int(min_length),
                                                    bool(needs_correlation)))
        return fn

    return decorate


def _check_ratio(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    value = float(value)
    if not (0.0 < value <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return value


@register_operator("mask", default_ratio=0.6, min_length=2)
def _mask(augmenter, item_seq, item_seq_len, ratio, generator):
    return mask(item_seq, item_seq_len, augmenter.mask_token_id, ratio, generator)


@register_operator("crop", default_ratio=0.4)
def _crop(augmenter, item_seq, item_seq_len, ratio, generator):
    return crop(item_seq, item_seq_len, ratio, generator)


@register_operator("reorder", default_ratio=0.6)
def _reorder(augmenter, item_seq, item_seq_len, ratio, generator):
    return reorder(item_seq, item_seq_len, ratio, generator)


@register_operator("substitute", default_ratio=0.1, needs_correlation=True)
def _substitute(augmenter, item_seq, item_seq_len, ratio, generator):
    return substitute(item_seq, item_seq_len, augmenter.correlated_items(item_seq.device), ratio, generator)


@register_operator("insert", default_ratio=0.4, needs_correlation=True)
def _insert(augmenter, item_seq, item_seq_len, ratio, generator):
    return insert(item_seq, item_seq_len, augmenter.correlated_items(item_seq.device), ratio, generator)


class AugmentedPair(NamedTuple):
    """Two augmented views of a batch. ``op_a``/``op_b`` index ``SequenceAugmenter.operators``
    (-1: no operator applicable, the view is the unchanged sequence)."""

    seq_a: torch.Tensor
    len_a: torch.Tensor
    seq_b: torch.Tensor
    len_b: torch.Tensor
    op_a: torch.Tensor
    op_b: torch.Tensor


def _check_operators(name: str, operators, allow_empty: bool = False) -> Tuple[str, ...]:
    if isinstance(operators, str):
        operators = (operators,)
    operators = tuple(operators)
    if not operators and not allow_empty:
        raise ValueError(f"{name} must name at least one of {list(OPERATOR_REGISTRY)}, got an empty sequence")
    for op in operators:
        if op not in OPERATOR_REGISTRY:
            raise ValueError(f"{name}: unknown augmentation operator {op!r}; choose from {list(OPERATOR_REGISTRY)}")
    duplicates = sorted({op for op in operators if operators.count(op) > 1})
    if duplicates:
        raise ValueError(f"{name}: augmentation operators must be distinct, got duplicates {duplicates}")
    return operators


def _init_setting_name(key: str) -> str:
    """The constructor's name of a setting, for its error messages."""
    return {"augmentations": "operators", "short_seq_augmentations": "short_seq_operators"}.get(key, key)


class SequenceAugmenter:
    """Draws two augmented views (f(S), g(S)) of every sequence of a batch.

    For each sequence, two operators f and g are drawn independently and uniformly from ``operators`` among those
    allowed for its length: ``"mask"`` is not a candidate for sequences of length 1, and with
    ``short_seq_threshold > 0`` a sequence of at most that length draws only among the configured operators that
    are in ``short_seq_operators`` (CoSeRec's rule: ``augment_threshold`` 4, ``SIM`` = insert, substitute, mask).
    If no operator is allowed, the view is the unchanged sequence and its op index is -1.
    Each configured operator is computed once over the whole batch (both views stacked), and each row
    then takes the result of its own operator.

    Operators are looked up in :data:`OPERATOR_REGISTRY`; the strength of operator ``op`` is ``<op>_ratio``
    (``mask_ratio``, ``crop_ratio``, ``reorder_ratio`` positionally, the others, e.g. ``substitute_ratio`` and
    ``insert_ratio``, as keyword arguments; each defaults to its registered default). Operators that need item
    correlations (substitute, insert) need :meth:`fit_data` (or :meth:`fit_sequences`) first, which builds the
    top-``correlation_topk`` correlated items of every item by ``correlation_measure``
    (:mod:`recbole_adaptssr.augment.correlation`). ``setting_name`` maps a setting to the name errors give
    (:meth:`from_settings` passes the stage's key).
    """

    def __init__(
        self,
        mask_token_id: int,
        operators: Sequence[str] = OPERATORS,
        mask_ratio: float = 0.6,
        crop_ratio: float = 0.4,
        reorder_ratio: float = 0.6,
        *,
        correlation_measure: str = "itemcf_iuf",
        correlation_topk: int = 1,
        short_seq_threshold: int = 0,
        short_seq_operators: Sequence[str] = SHORT_SEQ_OPERATORS,
        setting_name: Callable[[str], str] = _init_setting_name,
        **ratios: float,
    ) -> None:
        if isinstance(mask_token_id, bool) or not isinstance(mask_token_id, int) or mask_token_id < 1:
            raise ValueError(
                f"mask_token_id must be an integer >= 1 (0 is the padding id), got {mask_token_id!r}"
            )
        ratios = dict(ratios, mask_ratio=mask_ratio, crop_ratio=crop_ratio, reorder_ratio=reorder_ratio)
        unknown = sorted(key for key in ratios if not (key.endswith("_ratio") and key[: -len("_ratio")] in OPERATOR_REGISTRY))
        if unknown:
            raise TypeError(f"unknown augmentation settings {unknown}; operators: {list(OPERATOR_REGISTRY)}")
        self.mask_token_id = int(mask_token_id)
        self.operators: Tuple[str, ...] = _check_operators(setting_name("augmentations"), operators)
        #: operator name -> its ratio, for every registered operator
        self.ratios: Dict[str, float] = {}
        for op, spec in OPERATOR_REGISTRY.items():
            key = f"{op}_ratio"
            self.ratios[op] = _check_ratio(setting_name(key), ratios.get(key, spec.default_ratio))
            setattr(self, key, self.ratios[op])
        if correlation_measure not in MEASURES:
            raise ValueError(
                f"{setting_name('correlation_measure')} must be one of {list(MEASURES)}, got {correlation_measure!r}"
            )
        if isinstance(correlation_topk, bool) or not isinstance(correlation_topk, int) or correlation_topk < 1:
            raise ValueError(f"{setting_name('correlation_topk')} must be an integer >= 1, got {correlation_topk!r}")
        if isinstance(short_seq_threshold, bool) or not isinstance(short_seq_threshold, int) or short_seq_threshold < 0:
            raise ValueError(
                f"{setting_name('short_seq_threshold')} must be an integer >= 0 (0: off), got {short_seq_threshold!r}"
            )
        short = _check_operators(setting_name("short_seq_augmentations"), short_seq_operators, allow_empty=True)
        if short_seq_threshold > 0 and not set(short) & set(self.operators):
            raise ValueError(
                f"{setting_name('short_seq_augmentations')}={list(short)} shares no operator with "
                f"{setting_name('augmentations')}={list(self.operators)}: sequences of length <= "
                f"{short_seq_threshold} ({setting_name('short_seq_threshold')}) would have none"
            )
        self.correlation_measure = correlation_measure
        self.correlation_topk = int(correlation_topk)
        self.short_seq_threshold = int(short_seq_threshold)
        self.short_seq_operators: Tuple[str, ...] = short
        self.correlation: Optional[CorrelationTable] = None
        self._correlated_on: Dict[torch.device, torch.Tensor] = {}

    @classmethod
    def from_settings(cls, settings, mask_token_id: int) -> "SequenceAugmenter":
        """The augmenter of a stage's settings (a :class:`~recbole_adaptssr.pretext.base.StageSettings` view):
        ``augmentations``, ``<op>_ratio`` of every registered operator, ``correlation_measure``,
        ``correlation_topk``, ``short_seq_threshold`` and ``short_seq_augmentations``, each ``<stage>_<key>`` if set,
        else ``<key>``, else the default. Errors name the stage's key (``coserec_insert_ratio must be ...``)."""
        ratios = {f"{op}_ratio": settings.get(f"{op}_ratio", spec.default_ratio) for op, spec in OPERATOR_REGISTRY.items()}
        return cls(
            mask_token_id,
            settings["augmentations"],
            correlation_measure=settings.get("correlation_measure", "itemcf_iuf"),
            correlation_topk=settings.get("correlation_topk", 1),
            short_seq_threshold=settings.get("short_seq_threshold", 0),
            short_seq_operators=settings.get("short_seq_augmentations", SHORT_SEQ_OPERATORS),
            setting_name=settings.key,
            **ratios,
        )

    def __repr__(self) -> str:
        ratios = ", ".join(f"{op}_ratio={value}" for op, value in self.ratios.items())
        short = (f", short_seq_threshold={self.short_seq_threshold}, short_seq_operators={self.short_seq_operators}"
                 if self.short_seq_threshold else "")
        return f"{type(self).__name__}(mask_token_id={self.mask_token_id}, operators={self.operators}, {ratios}{short})"

    # ------------------------------------------------------------------ item correlations (substitute, insert)
    @property
    def needs_fit(self) -> bool:
        """Whether a configured operator needs the item correlations of :meth:`fit_data`."""
        return any(OPERATOR_REGISTRY[op].needs_correlation for op in self.operators)

    def fit_data(self, dataset) -> None:
        """Fit what the configured operators learn from the training split (an ``AdaptSSRDataset``: one row per user,
        ``item_id_list`` / ``item_length``): the item correlations, if an operator needs them; else nothing."""
        if not self.needs_fit:
            return
        feat = dataset.inter_feat
        list_field = getattr(dataset, "item_id_list_field", None) or dataset.iid_field + dataset.config["LIST_SUFFIX"]
        self.fit_sequences(feat[list_field], feat[dataset.item_list_length_field])

    def fit_sequences(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> CorrelationTable:
        """Build the correlated-item table from sequences ``(B, L)`` / ``(B,)`` (on the CPU, vectorised): one row per
        item id below ``mask_token_id`` plus an empty row for the mask token."""
        table = item_correlation(item_seq, item_seq_len, self.mask_token_id, self.correlation_topk, self.correlation_measure)
        pad = torch.zeros((1, self.correlation_topk), dtype=table.items.dtype)
        self.correlation = CorrelationTable(torch.cat([table.items, pad]), torch.cat([table.scores, pad.double()]))
        self._correlated_on = {}
        return self.correlation

    def correlated_items(self, device) -> torch.Tensor:
        """The fitted ``(mask_token_id + 1, correlation_topk)`` table of correlated item ids on ``device`` (cached)."""
        if self.correlation is None:
            needing = [op for op in self.operators if OPERATOR_REGISTRY[op].needs_correlation]
            raise RuntimeError(
                f"augmentation operators {needing or ['substitute', 'insert']} need the item correlations of the "
                "training corpus, which were not fitted: call SequenceAugmenter.fit_data(train split) (the pretext "
                "task does it in its fit_data, before its stage trains) or fit_sequences(item_seq, item_seq_len) first"
            )
        device = torch.device(device)
        if device not in self._correlated_on:
            self._correlated_on[device] = self.correlation.items.to(device)
        return self._correlated_on[device]

    # ------------------------------------------------------------------ drawing views
    def _operator_tables(self, device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per configured operator: its minimum length, and whether short sequences may draw it, on ``device``.
        Built once per device: no host-to-device copy per batch (a CUDA graph can capture the draw)."""
        device = torch.device(device)
        key = (device, self.operators, self.short_seq_operators)
        cache = self.__dict__.setdefault("_operator_tables_on", {})
        if key not in cache:
            cache[key] = (
                torch.tensor([OPERATOR_REGISTRY[op].min_length for op in self.operators], device=device),
                torch.tensor([op in self.short_seq_operators for op in self.operators], device=device),
            )
        return cache[key]

    def draw_operators(
        self, item_seq_len: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """One operator index per row, uniform over the operators allowed for that row (-1: none)."""
        n = item_seq_len.long()
        min_length, in_short = self._operator_tables(n.device)
        allowed = n.unsqueeze(1) >= min_length.unsqueeze(0)
        if self.short_seq_threshold > 0:
            allowed &= (n > self.short_seq_threshold).unsqueeze(1) | in_short.unsqueeze(0)
        count = allowed.sum(dim=1)
        u = torch.rand(n.shape, generator=generator, device=n.device, dtype=torch.float64)
        pick = torch.minimum(torch.floor(u * count.to(torch.float64)).long(), (count - 1).clamp(min=0))
        # Index of the (pick + 1)-th allowed operator.
        hit = allowed & (torch.cumsum(allowed.long(), dim=1) == (pick + 1).unsqueeze(1))
        op = torch.argmax(hit.long(), dim=1)
        return torch.where(count > 0, op, torch.full_like(op, -1))

    def __call__(
        self,
        item_seq: torch.Tensor,
        item_seq_len: torch.Tensor,
        generator: Optional[torch.Generator] = None,
    ) -> AugmentedPair:
        _check_inputs(item_seq, item_seq_len)
        B = item_seq.shape[0]
        seq2 = torch.cat([item_seq, item_seq], dim=0)  # both views at once: (2B, L)
        len2 = torch.cat([item_seq_len, item_seq_len], dim=0).to(device=item_seq.device, dtype=torch.long)
        op = self.draw_operators(len2, generator)
        seqs, lens = [], []
        for name in self.operators:
            s, l = OPERATOR_REGISTRY[name].apply(self, seq2, len2, self.ratios[name], generator)
            seqs.append(s)
            lens.append(l)
        seqs_t = torch.stack(seqs)  # (n_ops, 2B, L)
        lens_t = torch.stack(lens)  # (n_ops, 2B)
        rows = torch.arange(2 * B, device=item_seq.device)
        idx = op.clamp(min=0)
        out_seq = seqs_t[idx, rows]
        out_len = lens_t[idx, rows]
        none = op < 0
        out_seq = torch.where(none.unsqueeze(1), seq2, out_seq)
        out_len = torch.where(none, len2, out_len)
        return AugmentedPair(
            seq_a=out_seq[:B],
            len_a=out_len[:B],
            seq_b=out_seq[B:],
            len_b=out_len[B:],
            op_a=op[:B],
            op_b=op[B:],
        )

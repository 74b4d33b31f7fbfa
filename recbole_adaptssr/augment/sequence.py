"""Explicit sequence augmentations of AdaptSSR: the CL4SRec operators, batched.

The three operators are those of CL4SRec (Xie et al., "Contrastive Learning for Sequential
Recommendation", ICDE 2022), which AdaptSSR uses as its explicit augmentations. Each one acts on the
valid (non-padding) part of a behaviour sequence of length ``n``:

* ``crop``    keeps a random contiguous window of ``ceil(crop_ratio * n)`` items and moves it to the front;
* ``mask``    replaces ``min(ceil(mask_ratio * n), n - 1)`` distinct random positions with a mask token
              (never all of them; a sequence of length 1 is left unchanged);
* ``reorder`` randomly permutes one random contiguous window of ``ceil(reorder_ratio * n)`` items.

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
realistic ratio and sequence length. The result is then clamped to ``[1, n]``.
"""

from __future__ import annotations

from numbers import Real
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

__all__ = [
    "OPERATORS",
    "AugmentedPair",
    "SequenceAugmenter",
    "crop",
    "mask",
    "reorder",
]

#: Names of the available operators, in their canonical order.
OPERATORS: Tuple[str, ...] = ("mask", "crop", "reorder")

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
    B, L = item_seq.shape
    k = torch.minimum(_ceil_count(ratio, n), n - 1)
    pos = torch.arange(L, device=item_seq.device).unsqueeze(0)
    scores = torch.rand((B, L), generator=generator, device=item_seq.device)
    # Padding positions sort after every valid position, so the k lowest ranks are valid positions.
    scores = torch.where(pos < n.unsqueeze(1), scores, torch.full_like(scores, 2.0))
    rank = torch.argsort(torch.argsort(scores, dim=1, stable=True), dim=1)
    masked = rank < k.unsqueeze(1)
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


class AugmentedPair(NamedTuple):
    """Two augmented views of a batch. ``op_a``/``op_b`` index ``SequenceAugmenter.operators``
    (-1: no operator applicable, the view is the unchanged sequence)."""

    seq_a: torch.Tensor
    len_a: torch.Tensor
    seq_b: torch.Tensor
    len_b: torch.Tensor
    op_a: torch.Tensor
    op_b: torch.Tensor


def _check_ratio(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    value = float(value)
    if not (0.0 < value <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return value


class SequenceAugmenter:
    """Draws two augmented views (f(S), g(S)) of every sequence of a batch.

    For each sequence, two operators f and g are drawn independently and uniformly from ``operators``;
    ``"mask"`` is not a candidate for sequences of length 1 (the draw is then uniform over the other
    configured operators; if there is none, the view is the unchanged sequence and its op index is -1).
    Each configured operator is computed once over the whole batch (both views stacked), and each row
    then takes the result of its own operator.
    """

    def __init__(
        self,
        mask_token_id: int,
        operators: Sequence[str] = OPERATORS,
        mask_ratio: float = 0.6,
        crop_ratio: float = 0.4,
        reorder_ratio: float = 0.6,
    ) -> None:
        if isinstance(mask_token_id, bool) or not isinstance(mask_token_id, int) or mask_token_id < 1:
            raise ValueError(
                f"mask_token_id must be an integer >= 1 (0 is the padding id), got {mask_token_id!r}"
            )
        if isinstance(operators, str):
            operators = (operators,)
        operators = tuple(operators)
        if not operators:
            raise ValueError(f"operators must name at least one of {OPERATORS}, got an empty sequence")
        for op in operators:
            if op not in OPERATORS:
                raise ValueError(f"unknown augmentation operator {op!r}; choose from {OPERATORS}")
        duplicates = sorted({op for op in operators if operators.count(op) > 1})
        if duplicates:
            raise ValueError(f"augmentation operators must be distinct, got duplicates {duplicates}")
        self.mask_token_id = int(mask_token_id)
        self.operators: Tuple[str, ...] = operators
        self.mask_ratio = _check_ratio("mask_ratio", mask_ratio)
        self.crop_ratio = _check_ratio("crop_ratio", crop_ratio)
        self.reorder_ratio = _check_ratio("reorder_ratio", reorder_ratio)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mask_token_id={self.mask_token_id}, operators={self.operators}, "
            f"mask_ratio={self.mask_ratio}, crop_ratio={self.crop_ratio}, "
            f"reorder_ratio={self.reorder_ratio})"
        )

    def _apply(
        self, op: str, seq: torch.Tensor, seq_len: torch.Tensor, generator: Optional[torch.Generator]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if op == "mask":
            return mask(seq, seq_len, self.mask_token_id, self.mask_ratio, generator)
        if op == "crop":
            return crop(seq, seq_len, self.crop_ratio, generator)
        return reorder(seq, seq_len, self.reorder_ratio, generator)

    def draw_operators(
        self, item_seq_len: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """One operator index per row, uniform over the operators allowed for that row (-1: none)."""
        n = item_seq_len.long()
        allowed = torch.ones((n.shape[0], len(self.operators)), dtype=torch.bool, device=n.device)
        if "mask" in self.operators:
            allowed[:, self.operators.index("mask")] = n > 1
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
            s, l = self._apply(name, seq2, len2, generator)
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

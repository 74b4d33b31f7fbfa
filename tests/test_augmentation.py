"""Invariants of the batched CL4SRec augmentation operators (recbole_adaptssr.augment.sequence)."""

import math
from collections import Counter

import pytest
import torch

from recbole_adaptssr.augment.sequence import (
    AugmentedPair,
    SequenceAugmenter,
    crop,
    mask,
    reorder,
)

L = 50
B = 500
MASK_ID = 10_000  # larger than every item id used below


def expected_k(ratio, n):
    return math.ceil(round(ratio * n, 9))


def make_batch(batch=B, max_len=L, seed=0, lengths=None):
    """Rows of distinct item ids in [1, max_len] at [0, n), padding 0 after; lengths include 1 and max_len."""
    g = torch.Generator().manual_seed(seed)
    if lengths is None:
        lengths = torch.randint(1, max_len + 1, (batch,), generator=g)
        lengths[:3] = torch.tensor([1, max_len, 2])
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    items = torch.argsort(torch.rand(len(lengths), max_len, generator=g), dim=1) + 1
    pos = torch.arange(max_len).unsqueeze(0)
    seq = torch.where(pos < lengths.unsqueeze(1), items, torch.zeros_like(items))
    return seq, lengths


# ----------------------------------------------------------------------------- per-row checkers
# Each takes Python lists (input row, input length, output row, output length) and raises AssertionError.


def check_crop(inp, n, out, out_len, ratio):
    k = expected_k(ratio, n)
    assert out_len == k
    assert all(x == 0 for x in out[k:])
    valid = inp[:n]
    window = out[:k]
    assert any(valid[s : s + k] == window for s in range(n - k + 1)), (inp, n, out)


def check_reorder(inp, n, out, out_len, ratio):
    k = expected_k(ratio, n)
    assert out_len == n
    assert out[n:] == inp[n:]
    diff = [i for i in range(len(inp)) if inp[i] != out[i]]
    if not diff:
        return
    lo, hi = min(diff), max(diff)
    assert hi < n and hi - lo + 1 <= k, (inp, n, out)
    ok = False
    for s in range(max(0, hi - k + 1), min(lo, n - k) + 1):
        if Counter(out[s : s + k]) == Counter(inp[s : s + k]):
            ok = True
            break
    assert ok, (inp, n, out)


def check_mask(inp, n, out, out_len, ratio, token=MASK_ID):
    assert out_len == n
    expected = min(expected_k(ratio, n), n - 1) if n >= 2 else 0
    masked = [i for i in range(len(out)) if out[i] == token]
    assert len(masked) == expected
    assert all(i < n for i in masked)
    assert len(masked) < n
    assert all(out[i] == inp[i] for i in range(len(out)) if out[i] != token)


def check_rows(checker, seq, lens, out, out_len, *args):
    seq_l, lens_l, out_l, out_len_l = seq.tolist(), lens.tolist(), out.tolist(), out_len.tolist()
    for i in range(len(seq_l)):
        checker(seq_l[i], lens_l[i], out_l[i], out_len_l[i], *args)


# ----------------------------------------------------------------------------- operators


RATIOS = [0.1, 0.2, 0.4, 0.5, 0.6, 0.7, 0.9, 1.0]


@pytest.mark.parametrize("ratio", RATIOS)
def test_crop_invariants(ratio):
    seq, lens = make_batch(seed=1)
    seq0, lens0 = seq.clone(), lens.clone()
    out, out_len = crop(seq, lens, ratio=ratio, generator=torch.Generator().manual_seed(3))
    assert torch.equal(seq, seq0) and torch.equal(lens, lens0)
    assert out.shape == seq.shape and out.dtype == seq.dtype
    check_rows(check_crop, seq, lens, out, out_len, ratio)


@pytest.mark.parametrize("ratio", RATIOS)
def test_reorder_invariants(ratio):
    seq, lens = make_batch(seed=2)
    seq0, lens0 = seq.clone(), lens.clone()
    out, out_len = reorder(seq, lens, ratio=ratio, generator=torch.Generator().manual_seed(4))
    assert torch.equal(seq, seq0) and torch.equal(lens, lens0)
    assert out.shape == seq.shape and out.dtype == seq.dtype
    check_rows(check_reorder, seq, lens, out, out_len, ratio)
    # Each row is a permutation of its input.
    assert torch.equal(out.sort(dim=1).values, seq.sort(dim=1).values)


@pytest.mark.parametrize("ratio", RATIOS)
def test_mask_invariants(ratio):
    seq, lens = make_batch(seed=3)
    seq0, lens0 = seq.clone(), lens.clone()
    out, out_len = mask(seq, lens, MASK_ID, ratio=ratio, generator=torch.Generator().manual_seed(5))
    assert torch.equal(seq, seq0) and torch.equal(lens, lens0)
    assert out.shape == seq.shape and out.dtype == seq.dtype
    check_rows(check_mask, seq, lens, out, out_len, ratio)


def test_defaults_and_float_edge_counts():
    # 0.6 * 5 = 3.0000000000000004 must give 3; 0.4 * 5 = 2.0; 0.6 * 10 = 6.
    seq, lens = make_batch(lengths=[5, 5, 10, 10, 1, 3], max_len=12)
    g = torch.Generator().manual_seed(0)
    _, crop_len = crop(seq, lens, generator=g)
    assert crop_len.tolist() == [2, 2, 4, 4, 1, 2]
    out, _ = mask(seq, lens, MASK_ID, generator=g)
    assert (out == MASK_ID).sum(dim=1).tolist() == [3, 3, 6, 6, 0, 2]
    out, _ = reorder(seq, lens, generator=g)
    check_rows(check_reorder, seq, lens, out, lens, 0.6)


def test_window_starts_cover_range_and_reorder_shuffles():
    n, ratio = 10, 0.4  # k = 4, starts in [0, 6]
    seq, lens = make_batch(lengths=[n] * 2000, max_len=12, seed=7)
    out, _ = crop(seq, lens, ratio=ratio, generator=torch.Generator().manual_seed(1))
    starts = set()
    for inp, o in zip(seq.tolist(), out.tolist()):
        starts.add(inp.index(o[0]))
    assert starts == set(range(n - 4 + 1))
    out, _ = reorder(seq, lens, ratio=1.0, generator=torch.Generator().manual_seed(1))
    changed = (out != seq).any(dim=1).float().mean().item()
    assert changed > 0.99  # a random permutation of 10 items is almost never the identity
    # Every valid position gets masked sometimes; padding never.
    out, _ = mask(seq, lens, MASK_ID, ratio=0.5, generator=torch.Generator().manual_seed(1))
    freq = (out == MASK_ID).float().mean(dim=0)
    assert (freq[:n] > 0.35).all() and (freq[:n] < 0.65).all() and (freq[n:] == 0).all()


def test_operator_reproducibility():
    seq, lens = make_batch(seed=9)
    for fn, args in ((crop, ()), (reorder, ()), (mask, (MASK_ID,))):
        a = fn(seq, lens, *args, generator=torch.Generator().manual_seed(11))
        b = fn(seq, lens, *args, generator=torch.Generator().manual_seed(11))
        c = fn(seq, lens, *args, generator=torch.Generator().manual_seed(12))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], c[0])


# ----------------------------------------------------------------------------- SequenceAugmenter


def check_view(aug, seq, lens, out, out_len, ops):
    checkers = {
        "crop": lambda i, n, o, ol: check_crop(i, n, o, ol, aug.crop_ratio),
        "reorder": lambda i, n, o, ol: check_reorder(i, n, o, ol, aug.reorder_ratio),
        "mask": lambda i, n, o, ol: check_mask(i, n, o, ol, aug.mask_ratio, aug.mask_token_id),
    }
    rows = zip(seq.tolist(), lens.tolist(), out.tolist(), out_len.tolist(), ops.tolist())
    for inp, n, o, ol, op in rows:
        if op == -1:
            assert o == inp and ol == n
        else:
            checkers[aug.operators[op]](inp, n, o, ol)


def test_augmenter_views_consistent_with_ops():
    aug = SequenceAugmenter(MASK_ID)
    seq, lens = make_batch(batch=1000, seed=13)
    seq0, lens0 = seq.clone(), lens.clone()
    pair = aug(seq, lens, generator=torch.Generator().manual_seed(0))
    assert isinstance(pair, AugmentedPair)
    assert torch.equal(seq, seq0) and torch.equal(lens, lens0)
    for t in pair:
        assert t.shape[0] == seq.shape[0]
    assert pair.op_a.dtype == torch.long and pair.op_b.dtype == torch.long
    assert set(pair.op_a.tolist()) | set(pair.op_b.tolist()) <= {0, 1, 2}
    check_view(aug, seq, lens, pair.seq_a, pair.len_a, pair.op_a)
    check_view(aug, seq, lens, pair.seq_b, pair.len_b, pair.op_b)


@pytest.mark.parametrize("operators", [("crop",), ("reorder", "mask"), ("crop", "mask"), ("mask",)])
def test_augmenter_subsets(operators):
    aug = SequenceAugmenter(MASK_ID, operators=operators, mask_ratio=0.5, crop_ratio=0.2, reorder_ratio=1.0)
    seq, lens = make_batch(batch=400, seed=17)
    pair = aug(seq, lens, generator=torch.Generator().manual_seed(1))
    allowed = set(range(len(operators)))
    if operators == ("mask",):
        allowed.add(-1)
    for ops in (pair.op_a, pair.op_b):
        assert set(ops.tolist()) <= allowed
    check_view(aug, seq, lens, pair.seq_a, pair.len_a, pair.op_a)
    check_view(aug, seq, lens, pair.seq_b, pair.len_b, pair.op_b)
    if operators == ("mask",):
        # n = 1 rows: unchanged, op -1; longer rows: always mask.
        one = lens == 1
        for ops in (pair.op_a, pair.op_b):
            assert (ops[one] == -1).all() and (ops[~one] == 0).all()


def test_mask_never_chosen_for_length_one():
    aug = SequenceAugmenter(MASK_ID)
    mask_idx = aug.operators.index("mask")
    seq, lens = make_batch(lengths=[1] * 300, max_len=8)
    counts = Counter()
    for s in range(20):
        pair = aug(seq, lens, generator=torch.Generator().manual_seed(s))
        for ops in (pair.op_a, pair.op_b):
            assert (ops != mask_idx).all() and (ops >= 0).all()
            counts.update(ops.tolist())
        assert torch.equal(pair.len_a, lens) and torch.equal(pair.len_b, lens)
    # Uniform over the two remaining operators.
    total = sum(counts.values())
    for idx in range(3):
        if idx != mask_idx:
            assert 0.45 < counts[idx] / total < 0.55


def test_operator_distribution_uniform():
    aug = SequenceAugmenter(MASK_ID)
    lengths = torch.randint(2, L + 1, (15_000,), generator=torch.Generator().manual_seed(21))
    ops = aug.draw_operators(torch.cat([lengths, lengths]), generator=torch.Generator().manual_seed(22))
    assert ops.numel() == 30_000
    freq = torch.bincount(ops, minlength=3).double() / ops.numel()
    assert ((freq > 0.25) & (freq < 0.42)).all(), freq
    # Same through __call__, and f, g are drawn independently (not always equal).
    seq, lens = make_batch(batch=15_000, seed=23, lengths=lengths)
    pair = aug(seq, lens, generator=torch.Generator().manual_seed(24))
    ops = torch.cat([pair.op_a, pair.op_b])
    freq = torch.bincount(ops, minlength=3).double() / ops.numel()
    assert ((freq > 0.25) & (freq < 0.42)).all(), freq
    same = (pair.op_a == pair.op_b).double().mean().item()
    assert 0.28 < same < 0.39  # 1/3 if independent


def test_augmenter_reproducible():
    aug = SequenceAugmenter(MASK_ID)
    seq, lens = make_batch(seed=31)
    a = aug(seq, lens, generator=torch.Generator().manual_seed(5))
    b = aug(seq, lens, generator=torch.Generator().manual_seed(5))
    c = aug(seq, lens, generator=torch.Generator().manual_seed(6))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert any(not torch.equal(x, y) for x, y in zip(a, c))
    assert not torch.equal(a.seq_a, c.seq_a)


def test_empty_batch():
    aug = SequenceAugmenter(MASK_ID)
    seq = torch.zeros((0, L), dtype=torch.long)
    lens = torch.zeros((0,), dtype=torch.long)
    pair = aug(seq, lens, generator=torch.Generator().manual_seed(0))
    assert pair.seq_a.shape == (0, L) and pair.op_b.shape == (0,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"operators": ("mask", "shuffle")}, "unknown augmentation operator 'shuffle'"),
        ({"operators": ()}, "at least one"),
        ({"operators": ("crop", "crop")}, "distinct"),
        ({"mask_ratio": 0.0}, r"mask_ratio must be in \(0, 1\], got 0.0"),
        ({"crop_ratio": 1.5}, r"crop_ratio must be in \(0, 1\], got 1.5"),
        ({"reorder_ratio": -0.1}, r"reorder_ratio must be in \(0, 1\], got -0.1"),
        ({"reorder_ratio": float("nan")}, "reorder_ratio must be in"),
        ({"crop_ratio": "0.4"}, "crop_ratio must be a number"),
        ({"mask_token_id": 0}, "mask_token_id must be an integer >= 1"),
    ],
)
def test_bad_config(kwargs, match):
    kwargs = dict(kwargs)
    token = kwargs.pop("mask_token_id", MASK_ID)
    with pytest.raises(ValueError, match=match):
        SequenceAugmenter(token, **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="item_seq must have shape"):
        crop(torch.ones(5, dtype=torch.long), torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match="item_seq_len must have shape"):
        mask(torch.ones(2, 5, dtype=torch.long), torch.ones(3, dtype=torch.long), MASK_ID)

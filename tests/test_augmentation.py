"""Invariants of the batched augmentation operators (recbole_adaptssr.augment.sequence): CL4SRec's crop, mask and
reorder, CoSeRec's substitute and insert, the operator registry and the augmenter that draws among them."""

import math
from collections import Counter

import pytest
import torch

from recbole_adaptssr.augment.correlation import CorrelationTable
from recbole_adaptssr.augment.sequence import (
    OPERATOR_REGISTRY,
    AugmentedPair,
    SequenceAugmenter,
    crop,
    insert,
    mask,
    register_operator,
    reorder,
    substitute,
)
from recbole_adaptssr.pretext.base import StageSettings

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


# ----------------------------------------------------------------------------- CoSeRec's operators: substitute, insert
# The correlated items of the synthetic table live in [CORR_BASE, CORR_BASE + 100), a range no sequence uses, so an
# inserted or substituted item is recognisable in the output. Items 1..L have 0 to 3 correlated items.
CORR_BASE = 200


def correlation_table(max_item=L, seed=0):
    g = torch.Generator().manual_seed(seed)
    table = torch.zeros((CORR_BASE + 100, 3), dtype=torch.long)
    counts = torch.randint(0, 4, (max_item + 1,), generator=g)
    counts[0] = 0
    counts[1] = 0  # item 1 never has a correlated item
    counts[2] = 3
    for item in range(1, max_item + 1):
        picks = torch.randperm(100, generator=g)[: counts[item]] + CORR_BASE
        table[item, : counts[item]] = picks
    return table


def correlates(table, item):
    return {c for c in table[item].tolist() if c != 0} if item < table.shape[0] else set()


def check_substitute(inp, n, out, out_len, ratio, table):
    assert out_len == n
    assert out[n:] == inp[n:]
    eligible = [p for p in range(n) if correlates(table, inp[p])]
    changed = [p for p in range(len(inp)) if inp[p] != out[p]]
    assert len(changed) == min(expected_k(ratio, n), len(eligible)), (inp, n, out)
    assert all(p < n and out[p] in correlates(table, inp[p]) for p in changed), (inp, n, out)


def check_insert(inp, n, out, out_len, ratio, table, max_len=L):
    eligible = [p for p in range(n) if correlates(table, inp[p])]
    k = min(expected_k(ratio, n), len(eligible))
    assert out_len == min(n + k, max_len)
    assert all(x == 0 for x in out[out_len:])
    kept = out[:out_len]
    originals = [x for x in kept if x < CORR_BASE]
    assert originals == inp[n - len(originals) : n], (inp, n, out)  # the most recent behaviours, in order
    inserted = [i for i, x in enumerate(kept) if x >= CORR_BASE]
    assert len(inserted) <= k
    if n + k <= max_len:
        assert len(inserted) == k
    for i in inserted:  # each inserted item stands right before an original item it is correlated with
        assert i + 1 < len(kept) and kept[i + 1] < CORR_BASE, (inp, n, out)
        assert kept[i] in correlates(table, kept[i + 1]), (inp, n, out)


@pytest.mark.parametrize("ratio", [0.1, 0.4, 0.7, 1.0])
@pytest.mark.parametrize("operator, checker", [(substitute, check_substitute), (insert, check_insert)])
def test_correlated_operator_invariants(operator, checker, ratio):
    table = correlation_table()
    seq, lens = make_batch(seed=41)
    seq0, lens0 = seq.clone(), lens.clone()
    out, out_len = operator(seq, lens, table, ratio=ratio, generator=torch.Generator().manual_seed(1))
    assert torch.equal(seq, seq0) and torch.equal(lens, lens0)
    assert out.shape == seq.shape and out.dtype == seq.dtype
    check_rows(checker, seq, lens, out, out_len, ratio, table)
    if operator is insert:  # some sequences grew past L and lost their oldest items
        assert (out_len == L).sum() > (lens == L).sum()


def test_substitute_and_insert_length_one_and_uncorrelated_rows():
    table = correlation_table()
    seq = torch.tensor([[2, 0, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0]])  # item 1 has no correlated item
    lens = torch.tensor([1, 1, 2, 1])
    out, out_len = substitute(seq, lens, table, ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert out_len.tolist() == [1, 1, 2, 1]
    assert out[0, 0].item() in correlates(table, 2) and out[0, 1:].tolist() == [0, 0]
    assert torch.equal(out[1:3], seq[1:3])
    out, out_len = insert(seq, lens, table, ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert out_len.tolist() == [2, 1, 2, 2]
    assert out[0, 0].item() in correlates(table, 2) and out[0, 1:].tolist() == [2, 0]
    assert torch.equal(out[1:3], seq[1:3])
    # a width of 1: the inserted item is older than the item, so the most recent one is kept
    out, out_len = insert(seq[3:, :1], lens[3:], table, ratio=1.0, generator=torch.Generator().manual_seed(0))
    assert out.tolist() == [[2]] and out_len.tolist() == [1]


def test_correlated_draw_covers_the_top_k_uniformly():
    table = correlation_table()
    seq = torch.full((6000, 1), 2)  # item 2 has three correlated items
    lens = torch.ones(6000, dtype=torch.long)
    out, _ = substitute(seq, lens, table, ratio=1.0, generator=torch.Generator().manual_seed(5))
    freq = torch.bincount(out[:, 0] - CORR_BASE, minlength=100).double() / 6000
    for item in correlates(table, 2):
        assert 0.29 < freq[item - CORR_BASE] < 0.38
    ins, _ = insert(torch.cat([seq, torch.zeros_like(seq)], 1), lens, table, ratio=1.0,
                    generator=torch.Generator().manual_seed(5))
    assert set(ins[:, 0].tolist()) == correlates(table, 2) and (ins[:, 1] == 2).all()


def test_substitute_insert_reproducible():
    table = correlation_table()
    seq, lens = make_batch(seed=47)
    for fn in (substitute, insert):
        a = fn(seq, lens, table, generator=torch.Generator().manual_seed(11))
        b = fn(seq, lens, table, generator=torch.Generator().manual_seed(11))
        c = fn(seq, lens, table, generator=torch.Generator().manual_seed(12))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], c[0])


# ----------------------------------------------------------------------------- the registry and a fitted augmenter
def fitted_augmenter(operators, **kwargs):
    """An augmenter whose correlation table is the synthetic one above."""
    aug = SequenceAugmenter(MASK_ID, operators=operators, **kwargs)
    table = correlation_table()
    padded = torch.zeros((MASK_ID + 1, table.shape[1]), dtype=torch.long)
    padded[: table.shape[0]] = table
    aug.correlation = CorrelationTable(padded, padded.double())
    return aug, table


def check_any_view(aug, table, seq, lens, out, out_len, ops):
    """check_view, extended to substitute and insert."""
    for row, op in enumerate(ops.tolist()):
        name = aug.operators[op] if op >= 0 else None
        args = (seq[row].tolist(), lens[row].item(), out[row].tolist(), out_len[row].item())
        if name == "substitute":
            check_substitute(*args, aug.substitute_ratio, table)
        elif name == "insert":
            check_insert(*args, aug.insert_ratio, table)
        else:
            check_view(aug, seq[row:row + 1], lens[row:row + 1], out[row:row + 1], out_len[row:row + 1], ops[row:row + 1])


def test_augmenter_with_all_five_operators():
    operators = ("substitute", "insert", "crop", "mask", "reorder")
    aug, table = fitted_augmenter(operators, substitute_ratio=0.3, insert_ratio=0.5)
    assert (aug.substitute_ratio, aug.insert_ratio, aug.mask_ratio) == (0.3, 0.5, 0.6)
    seq, lens = make_batch(batch=600, seed=51)
    pair = aug(seq, lens, generator=torch.Generator().manual_seed(0))
    for ops in (pair.op_a, pair.op_b):
        assert set(ops.tolist()) == set(range(5))
    check_any_view(aug, table, seq, lens, pair.seq_a, pair.len_a, pair.op_a)
    check_any_view(aug, table, seq, lens, pair.seq_b, pair.len_b, pair.op_b)
    again = aug(seq, lens, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(pair, again))


def test_short_sequence_rule():
    """CoSeRec: sequences of at most short_seq_threshold behaviours draw only among the short-sequence operators."""
    operators = ("crop", "mask", "reorder", "substitute", "insert")
    aug, _ = fitted_augmenter(operators, short_seq_threshold=4)
    assert aug.short_seq_operators == ("insert", "substitute", "mask")
    lengths = torch.randint(1, 12, (20_000,), generator=torch.Generator().manual_seed(3))
    ops = aug.draw_operators(lengths, generator=torch.Generator().manual_seed(4))
    names = [aug.operators[i] for i in ops.tolist()]
    short = {name for name, n in zip(names, lengths.tolist()) if n <= 4}
    assert short == {"insert", "substitute", "mask"}
    assert {name for name, n in zip(names, lengths.tolist()) if n == 1} == {"insert", "substitute"}
    assert {name for name, n in zip(names, lengths.tolist()) if n > 4} == set(operators)
    long = torch.bincount(ops[lengths > 4], minlength=5).double() / (lengths > 4).sum()
    assert ((long > 0.17) & (long < 0.23)).all(), long


def test_operator_needing_correlations_says_fit_first():
    aug = SequenceAugmenter(MASK_ID, operators=("crop", "substitute"))
    seq, lens = make_batch(batch=4)
    with pytest.raises(RuntimeError, match=r"\['substitute'\] need the item correlations .* fit_data"):
        aug(seq, lens)
    # operators without that need never fit anything
    plain = SequenceAugmenter(MASK_ID)
    assert not plain.needs_fit and aug.needs_fit
    plain.fit_data(object())  # nothing is read from the data set
    assert plain.correlation is None


def test_fit_sequences_pads_the_mask_token_row():
    aug = SequenceAugmenter(7, operators=("insert",), correlation_measure="count", correlation_topk=2)
    seq = torch.tensor([[1, 2, 3], [2, 3, 0], [4, 0, 0]])
    table = aug.fit_sequences(seq, torch.tensor([3, 2, 1]))
    assert table.items.shape == (8, 2)
    assert table.items.tolist() == [[0, 0], [2, 3], [3, 1], [2, 1], [0, 0], [0, 0], [0, 0], [0, 0]]
    assert torch.equal(aug.correlated_items("cpu"), table.items)


@pytest.fixture
def registry_snapshot():
    saved = dict(OPERATOR_REGISTRY)
    yield
    OPERATOR_REGISTRY.clear()
    OPERATOR_REGISTRY.update(saved)


def test_registering_an_operator_is_one_function(registry_snapshot):
    @register_operator("reverse", default_ratio=1.0)
    def reverse(augmenter, item_seq, item_seq_len, ratio, generator):
        """Reverse the valid part (ratio unused)."""
        pos = torch.arange(item_seq.shape[1]).unsqueeze(0)
        src = (item_seq_len.unsqueeze(1) - 1 - pos).clamp(min=0)
        out = torch.where(pos < item_seq_len.unsqueeze(1), item_seq.gather(1, src), torch.zeros_like(item_seq))
        return out, item_seq_len.clone()

    aug = SequenceAugmenter(MASK_ID, operators=("reverse", "crop"), reverse_ratio=0.5)
    assert aug.ratios["reverse"] == 0.5 and aug.reverse_ratio == 0.5
    seq, lens = make_batch(batch=200, seed=61)
    pair = aug(seq, lens, generator=torch.Generator().manual_seed(0))
    for row in range(200):
        n = lens[row].item()
        if pair.op_a[row] == 0:
            assert pair.seq_a[row, :n].tolist() == seq[row, :n].flip(0).tolist()
    settings = StageSettings(FakeConfig(augmentations=["reverse"], reverse_ratio=0.25), "stage")
    assert SequenceAugmenter.from_settings(settings, MASK_ID).ratios["reverse"] == 0.25
    with pytest.raises(ValueError, match="already registered"):
        register_operator("reverse", default_ratio=0.5)
    with pytest.raises(TypeError, match=r"unknown augmentation settings \['shuffle_ratio'\]"):
        SequenceAugmenter(MASK_ID, shuffle_ratio=0.5)


class FakeConfig(dict):
    """The part of RecBole's Config that StageSettings reads: missing keys are None."""

    final_config_dict = property(lambda self: self)

    def __getitem__(self, key):
        return self.get(key)


def test_from_settings_reads_the_stage_keys_and_names_them():
    config = FakeConfig(
        augmentations=["mask", "crop"], mask_ratio=0.6, crop_ratio=0.4, reorder_ratio=0.6, substitute_ratio=0.1,
        stage_augmentations=["substitute", "insert", "mask"], stage_insert_ratio=0.3, stage_correlation_topk=2,
        stage_short_seq_threshold=3, stage_short_seq_augmentations=["insert"], stage_correlation_measure="count",
    )
    aug = SequenceAugmenter.from_settings(StageSettings(config, "stage"), MASK_ID)
    assert aug.operators == ("substitute", "insert", "mask")
    assert aug.ratios == {"mask": 0.6, "crop": 0.4, "reorder": 0.6, "substitute": 0.1, "insert": 0.3}
    assert (aug.correlation_topk, aug.correlation_measure, aug.short_seq_threshold) == (2, "count", 3)
    assert aug.short_seq_operators == ("insert",)
    bad = {
        "stage_insert_ratio": (1.5, r"stage_insert_ratio must be in \(0, 1\], got 1.5"),
        "substitute_ratio": (0.0, r"^substitute_ratio must be in \(0, 1\]"),
        "stage_augmentations": (["insert", "swap"], "stage_augmentations: unknown augmentation operator 'swap'"),
        "stage_correlation_topk": (0, "stage_correlation_topk must be an integer >= 1"),
        "stage_correlation_measure": ("jaccard", "stage_correlation_measure must be one of"),
        "stage_short_seq_threshold": (-1, "stage_short_seq_threshold must be an integer >= 0"),
        "stage_short_seq_augmentations": (["crop"], r"stage_short_seq_augmentations=\['crop'\] shares no operator"),
    }
    for key, (value, message) in bad.items():
        with pytest.raises(ValueError, match=message):
            SequenceAugmenter.from_settings(StageSettings(FakeConfig(config, **{key: value}), "stage"), MASK_ID)

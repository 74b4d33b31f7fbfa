"""The item correlation table of CoSeRec's substitute and insert (recbole_adaptssr.augment.correlation) against a
brute-force count over a tiny corpus, and its fitting from a pre-training split."""

import math
from collections import Counter, defaultdict

import pytest
import torch
from recbole.utils import init_seed

from recbole_adaptssr.augment.correlation import MEASURES, item_correlation
from recbole_adaptssr.augment.sequence import SequenceAugmenter
from recbole_adaptssr.config import Config
from recbole_adaptssr.data.utils import create_dataset

N_ROWS = 26  # item ids 1..25 count; ids >= 26 are outside the table and ignored


def tiny_corpus(seed=0, n=60, width=12):
    """Sequences with repeated items, lengths 1..width, ids up to 29 (some outside the table), and non-zero
    garbage after each sequence's length (which must be ignored)."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, width + 1, (n,), generator=g)
    seq = torch.randint(1, 30, (n, width), generator=g)
    seq[:, 0] = torch.randint(1, 6, (n,), generator=g)  # frequent items: many ties and repeats
    return seq, lens


def brute_force(seq, lens, n_rows, measure):
    """score[i][j] by the definition: per sequence, its set of distinct items in [1, n_rows)."""
    users_of = Counter()
    co = defaultdict(float)
    for row, n in zip(seq.tolist(), lens.tolist()):
        items = {i for i in row[:n] if 0 < i < n_rows}
        weight = 1.0 / math.log(1 + len(items)) if measure == "itemcf_iuf" else 1.0
        users_of.update(items)
        for i in items:
            for j in items:
                if i != j:
                    co[i, j] += weight
    score = defaultdict(dict)
    for (i, j), c in co.items():
        score[i][j] = c if measure == "count" else c / math.sqrt(users_of[i] * users_of[j])
    return score


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("topk", [1, 3, 40])
def test_table_equals_brute_force(measure, topk):
    seq, lens = tiny_corpus()
    table = item_correlation(seq, lens, N_ROWS, topk, measure)
    assert table.items.shape == (N_ROWS, topk) and table.items.dtype == torch.long
    score = brute_force(seq, lens, N_ROWS, measure)
    for i in range(N_ROWS):
        expected = sorted(score.get(i, {}).items(), key=lambda jc: (-jc[1], jc[0]))[:topk]
        items, scores = table.items[i].tolist(), table.scores[i].tolist()
        got = [(j, s) for j, s in zip(items, scores) if j != 0]
        assert all(j == 0 and s == 0 for j, s in zip(items[len(got):], scores[len(got):]))  # padding at the end
        assert len(got) == len(expected), i
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-12)
        for j, s in got:  # every listed item has the score the definition gives it
            assert j != i and score[i][j] == pytest.approx(s, rel=1e-12)
        if measure == "count":  # integer scores: the order, ties by smaller id, is exact
            assert got == expected
    assert table.counts.tolist() == [min(len(score.get(i, {})), topk) for i in range(N_ROWS)]


def test_row_blocks_give_the_same_table():
    seq, lens = tiny_corpus(seed=3)
    whole = item_correlation(seq, lens, N_ROWS, 4, "itemcf_iuf")
    blocked = item_correlation(seq, lens, N_ROWS, 4, "itemcf_iuf", block_nnz=7)  # about one item row per block
    assert torch.equal(whole.items, blocked.items)
    assert torch.allclose(whole.scores, blocked.scores, rtol=1e-12, atol=0)


def test_padding_and_unseen_ids_have_no_correlated_item():
    seq = torch.tensor([[3, 3, 0, 0], [5, 0, 0, 0], [3, 4, 9, 0]])
    lens = torch.tensor([2, 1, 3])
    table = item_correlation(seq, lens, 6, 2, "count")
    assert table.items.tolist() == [[0, 0], [0, 0], [0, 0], [4, 0], [3, 0], [0, 0]]
    assert table.scores[3, 0].item() == 1.0  # 3 twice in one sequence still counts once
    with pytest.raises(ValueError, match="correlation measure must be one of"):
        item_correlation(seq, lens, 6, 2, "jaccard")
    with pytest.raises(ValueError, match="correlation topk must be an integer >= 1"):
        item_correlation(seq, lens, 6, 0)


def test_augmenter_fits_on_the_training_split(tiny_config):
    """fit_data reads the split's item_id_list / item_length: the table is the split's, plus the mask token's row."""
    config = Config(model="AdaptSSR", dataset="tiny", config_dict=tiny_config)
    init_seed(config["seed"], config["reproducibility"])
    train_set, _ = create_dataset(config).build()
    feat = train_set.inter_feat
    seq, lens = feat[train_set.item_id_list_field], feat[train_set.item_list_length_field]
    aug = SequenceAugmenter(train_set.item_num, operators=("substitute", "insert"), correlation_topk=2)
    aug.fit_data(train_set)
    expected = item_correlation(seq, lens, train_set.item_num, 2, "itemcf_iuf")
    assert aug.correlation.items.shape == (train_set.item_num + 1, 2)
    assert torch.equal(aug.correlation.items[:-1], expected.items)
    assert aug.correlation.items[-1].tolist() == [0, 0]  # the mask token has no correlated item
    # the planted clusters of the tiny data: an item's most correlated item is mostly of its own cluster
    per_cluster = 15  # 60 items in 4 clusters
    tokens = [int(train_set.id2token(train_set.iid_field, i)[1:]) for i in range(1, train_set.item_num)]
    top = aug.correlation.items[1:-1, 0].tolist()
    same = sum((tokens[i] - 1) // per_cluster == (tokens[j - 1] - 1) // per_cluster for i, j in enumerate(top) if j)
    assert same / len(top) > 0.9, same / len(top)

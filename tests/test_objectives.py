"""The baseline objectives (recbole_adaptssr.objectives) against hand-written per-sample loop references: value and
gradient, on small hand-made or seeded float64 inputs."""

import math

import pytest
import torch

from recbole_adaptssr.objectives import (
    barlow_twins_loss,
    candidate_logits,
    contrastive_logits,
    cross_correlation,
    info_nce,
    mean_offdiagonal_cosine,
    sampled_softmax_loss,
    supervised_info_nce,
    top1_accuracy,
)

TIGHT = dict(rtol=1e-9, atol=1e-12)


def leaves(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]


def grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


def sim(a, b, similarity):
    """Similarity of two 1-D tensors, element by element."""
    dot = sum(a[k] * b[k] for k in range(a.shape[0]))
    if similarity == "dot":
        return dot
    return dot / (torch.sqrt(sum(x * x for x in a)) * torch.sqrt(sum(y * y for y in b)))


# ------------------------------------------------------------------------------------------- InfoNCE
def ref_contrastive(z1, z2, temperature, similarity, negatives, labels=None, same_label="keep"):
    """Mean over the 2B anchors of -mean_{p in P(a)} log(exp(s_ap / t) / sum_{c in C(a)} exp(s_ac / t))."""
    B = z1.shape[0]
    z = [z1[i] for i in range(B)] + [z2[i] for i in range(B)]
    total = 0.0
    for a in range(2 * B):
        i = a % B
        candidates, positives = [], [a + B if a < B else a - B]
        for c in range(2 * B):
            j = c % B
            if c == a or (negatives == "other_view" and (c < B) == (a < B)):
                continue
            shares = labels is not None and j != i and labels[j] == labels[i]
            if shares and same_label == "mask":
                continue
            if shares and same_label == "positive":
                positives.append(c)
            candidates.append(c)
        denominator = sum(torch.exp(sim(z[a], z[c], similarity) / temperature) for c in candidates)
        total = total - sum(torch.log(torch.exp(sim(z[a], z[p], similarity) / temperature) / denominator)
                            for p in positives) / len(positives)
    return total / (2 * B)


@pytest.mark.parametrize("similarity", ["dot", "cos"])
@pytest.mark.parametrize("negatives", ["both_views", "other_view"])
def test_info_nce_matches_the_loop_in_value_and_gradient(similarity, negatives):
    z1, z2 = leaves((4, 3), (4, 3))
    ours = info_nce(z1, z2, temperature=0.7, negatives=negatives, similarity=similarity)
    ref = ref_contrastive(z1, z2, 0.7, similarity, negatives)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    for g_ours, g_ref in zip(grads(ours, (z1, z2)), grads(ref, (z1, z2))):
        torch.testing.assert_close(g_ours, g_ref, **TIGHT)


@pytest.mark.parametrize("same_label", ["keep", "mask", "positive"])
def test_supervised_info_nce_matches_the_loop(same_label):
    z1, z2 = leaves((5, 3), (5, 3), seed=1)
    labels = torch.tensor([7, 3, 7, 2, 3])
    ours = supervised_info_nce(z1, z2, labels, temperature=0.5, same_label=same_label)
    ref = ref_contrastive(z1, z2, 0.5, "dot", "both_views", labels.tolist(), same_label)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    for g_ours, g_ref in zip(grads(ours, (z1, z2)), grads(ref, (z1, z2))):
        torch.testing.assert_close(g_ours, g_ref, **TIGHT)
    if same_label == "keep":  # DuoRec's release: sharing a label changes nothing
        assert ours.item() == pytest.approx(info_nce(z1, z2, temperature=0.5).item(), rel=1e-12)


def test_masked_false_negatives_get_neither_weight_nor_gradient():
    """Two samples sharing their label: with ``mask`` each anchor's only candidate is its positive, so the loss is 0
    and nothing flows; with ``keep`` they repel each other."""
    z1, z2 = leaves((2, 3), (2, 3), seed=2)
    labels = torch.tensor([4, 4])
    masked = supervised_info_nce(z1, z2, labels, same_label="mask")
    assert masked.item() == 0.0
    assert all(float(g.abs().max()) == 0.0 for g in grads(masked, (z1, z2)))
    assert supervised_info_nce(z1, z2, labels, same_label="keep").item() > 0


def test_top1_accuracy_and_mean_offdiagonal_cosine_on_hand_made_views():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    matched = torch.tensor([[1.0, 0.1], [0.1, 1.0]])
    assert top1_accuracy(*contrastive_logits(z1, matched, negatives="other_view")).item() == 1.0
    assert top1_accuracy(*contrastive_logits(z1, matched.flip(0), negatives="other_view")).item() == 0.0
    u = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])  # cosines 1, 0, 0 between the three pairs
    assert mean_offdiagonal_cosine(u).item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("kwargs,message", [
    ({"temperature": -0.1}, r"temperature must be a finite number > 0, got -0.1"),
    ({"similarity": "l2"}, r"similarity must be one of \['dot', 'cos'\], got 'l2'"),
    ({"negatives": "all"}, r"negatives must be one of \['both_views', 'other_view'\]"),
])
def test_bad_options_are_named(kwargs, message):
    z1, z2 = leaves((3, 2), (3, 2))
    with pytest.raises(ValueError, match=message):
        info_nce(z1, z2, **kwargs)


# ------------------------------------------------------------------------------------------- Barlow Twins
def ref_barlow(z1, z2, lam, eps):
    B, D = z1.shape

    def standardized(z):
        columns = []
        for k in range(D):
            mean = sum(z[b, k] for b in range(B)) / B
            var = sum((z[b, k] - mean) ** 2 for b in range(B)) / B
            columns.append([(z[b, k] - mean) / torch.sqrt(var + eps) for b in range(B)])
        return columns  # columns[k][b]

    a, b_ = standardized(z1), standardized(z2)
    loss = 0.0
    for i in range(D):
        for j in range(D):
            c = sum(a[i][b] * b_[j][b] for b in range(B)) / B
            loss = loss + ((1 - c) ** 2 if i == j else lam * c ** 2)
    return loss


def test_barlow_twins_matches_the_loop_in_value_and_gradient():
    z1, z2 = leaves((6, 4), (6, 4), seed=3)
    ours = barlow_twins_loss(z1, z2, lambda_offdiag=0.3, eps=1e-5)
    ref = ref_barlow(z1, z2, 0.3, 1e-5)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    for g_ours, g_ref in zip(grads(ours, (z1, z2)), grads(ref, (z1, z2))):
        torch.testing.assert_close(g_ours, g_ref, **TIGHT)


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    """Two identical views with uncorrelated unit-variance dimensions: C is the identity (up to eps)."""
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    c = cross_correlation(z, 3 * z + 1, eps=0.0)  # standardisation removes scale and shift
    torch.testing.assert_close(c, torch.eye(2, dtype=torch.float64))
    assert barlow_twins_loss(z, z, eps=0.0).item() == pytest.approx(0.0, abs=1e-12)
    assert barlow_twins_loss(z, z[:, [1, 0]], eps=0.0).item() == pytest.approx(2.0 + 2 * 0.0051 * 1.0)


# ------------------------------------------------------------------------------------------- item prediction
def ref_sampled(query, weight, targets, negatives, excluded=()):
    """Mean over queries of -log softmax of the target among its candidates (accidental hits and excluded dropped)."""
    total = 0.0
    for n in range(query.shape[0]):
        t = int(targets[n])
        if negatives is None:
            candidates = [c for c in range(weight.shape[0]) if c not in excluded]
        else:
            candidates = [t] + [int(c) for c in negatives[n] if int(c) != t]
        scores = {c: sum(query[n, k] * weight[c, k] for k in range(query.shape[1])) for c in candidates}
        total = total - torch.log(torch.exp(scores[t]) / sum(torch.exp(s) for s in scores.values()))
    return total / query.shape[0]


@pytest.mark.parametrize("full", [False, True])
def test_sampled_and_full_softmax_match_the_loop(full):
    query, weight = leaves((3, 2), (6, 2), seed=4)
    targets = torch.tensor([1, 4, 2])
    negatives = None if full else torch.tensor([[2, 3], [4, 5], [1, 2]])  # row 1 has an accidental hit
    excluded = (0, 5) if full else ()
    ours = sampled_softmax_loss(query, weight, targets, negatives, excluded_items=excluded)
    ref = ref_sampled(query, weight, targets, negatives, excluded)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    for g_ours, g_ref in zip(grads(ours, (query, weight)), grads(ref, (query, weight))):
        torch.testing.assert_close(g_ours, g_ref, **TIGHT)


def test_accidental_hits_and_excluded_items_are_never_candidates():
    query, weight = leaves((2, 2), (4, 2), seed=5)
    logits, column = candidate_logits(query, weight, torch.tensor([1, 2]), torch.tensor([[1, 3], [3, 3]]))
    assert column.tolist() == [0, 0] and math.isinf(logits[0, 1].item()) and torch.isfinite(logits[1]).all()
    full, target = candidate_logits(query, weight, torch.tensor([1, 2]), excluded_items=(0, 3))
    assert target.tolist() == [1, 2] and torch.isinf(full[:, [0, 3]]).all() and torch.isfinite(full[:, 1:3]).all()
    # the padding row (excluded) receives no gradient
    (g,) = grads(sampled_softmax_loss(query, weight, torch.tensor([1, 2]), excluded_items=(0,)), (weight,))
    assert float(g[0].abs().max()) == 0.0 and float(g[3].abs().max()) > 0.0

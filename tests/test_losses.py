"""AdaptSSR losses (recbole_adaptssr.losses) against a per-sample loop reference of Eq. 5, 6, 7 and 9."""

import math

import pytest
import torch
import torch.nn.functional as F

from recbole_adaptssr.losses import adaptssr_lambda, adaptssr_loss, hard_ranking_constraints, ranking_accuracies

VIEWS = ("h", "hp", "t", "tp")  # u^, u^+, u~, u~+
TIGHT = dict(rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------- loop reference
def cos_math(x, y):
    """Cosine of two plain lists of floats, element by element."""
    dot = sum(a * b for a, b in zip(x, y))
    nx = math.sqrt(sum(a * a for a in x))
    ny = math.sqrt(sum(b * b for b in y))
    return dot / (nx * ny)


def cos_tensor(x, y):
    """Differentiable cosine of two 1-D float64 tensors (for the gradient tests)."""
    return torch.dot(x, y) / (x.norm() * y.norm())


def logsigmoid(x):
    if isinstance(x, torch.Tensor):
        return F.logsigmoid(x)
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def as_math(h, hp, t, tp):
    return {name: x.tolist() for name, x in zip(VIEWS, (h, hp, t, tp))}


def as_rows(h, hp, t, tp):
    return {name: [x[i] for i in range(x.shape[0])] for name, x in zip(VIEWS, (h, hp, t, tp))}


def make_sim(vecs, cos):
    cache = {}

    def sim(a, i, b, j):
        key = (a, i, b, j)
        if key not in cache:
            cache[key] = cos(vecs[a][i], vecs[b][j])
        return cache[key]

    return sim


def _constant(x):
    """A constant float64 tensor equal to x's value (no autograd history)."""
    return torch.tensor(x.detach().item(), dtype=torch.float64) if isinstance(x, torch.Tensor) else x


def ref_lambda(vecs, lambda_mode, fixed_lambda, lambda_estimate, *, clamp=True, detach=True, cos=cos_math):
    """Lists (lam_hat_i, lam_tilde_i) over i, from Eq. 7 (sample), the release's batch mean, or fixed."""
    B = len(vecs["h"])
    sim = make_sim(vecs, cos)
    if lambda_mode == "fixed":
        return [fixed_lambda] * B, [fixed_lambda] * B
    if lambda_estimate == "sample":
        lam = []
        for i in range(B):
            acc = 0.0
            for s_hat in ("h", "hp"):
                for s_tilde in ("t", "tp"):
                    s = sim(s_hat, i, s_tilde, i)
                    acc = acc + (max(s, 0.0) if clamp else s)
            lam.append(1.0 - acc / 4)
        lam_hat, lam_tilde = lam, lam
    else:
        acc_h = acc_t = 0.0
        for i in range(B):
            for v in ("t", "tp"):
                acc_h = acc_h + sim("h", i, v, i)
            for v in ("h", "hp"):
                acc_t = acc_t + sim("t", i, v, i)
        lam_hat = [1.0 - acc_h / (2 * B)] * B
        lam_tilde = [1.0 - acc_t / (2 * B)] * B
    if detach:  # replace lambda by constants equal to its value
        lam_hat, lam_tilde = [_constant(x) for x in lam_hat], [_constant(x) for x in lam_tilde]
    return lam_hat, lam_tilde


def ref_loss(vecs, *, lambda_mode="adaptive", fixed_lambda=0.5, lambda_estimate="sample", hard_negative=True,
             ranking=True, infonce_temperature=1.0, clamp=True, detach=True, cos=cos_math):
    """Straight per-sample loops over i, v, w of Eq. 5 / Eq. 6 (with Eq. 7), or Eq. 9 when ranking=False."""
    B = len(vecs["h"])
    sim = make_sim(vecs, cos)
    if not ranking:
        T = infonce_temperature
        total = 0.0
        for anchor, other in (("h", "t"), ("t", "h")):
            for i in range(B):
                pos = sim(anchor, i, other, i) / T
                logits = [pos]
                for j in range(B):
                    if j != i:
                        logits += [sim(anchor, i, anchor, j) / T, sim(anchor, i, other, j) / T]
                assert len(logits) == 1 + 2 * (B - 1)
                m = max(logits)
                total += m + math.log(sum(math.exp(z - m) for z in logits)) - pos
        return total / (2 * B)

    lam_hat, lam_tilde = ref_lambda(vecs, lambda_mode, fixed_lambda, lambda_estimate, clamp=clamp, detach=detach,
                                    cos=cos)
    total = 0.0
    for anchor, partner, pair, lams in (("h", "hp", ("t", "tp"), lam_hat), ("t", "tp", ("h", "hp"), lam_tilde)):
        for i in range(B):
            lam = lams[i]
            s_pos = sim(anchor, i, partner, i)
            s_v = [sim(anchor, i, v, i) for v in pair]
            negatives = [(w, j) for j in range(B) if j != i for w in VIEWS]
            assert len(negatives) == 4 * (B - 1)
            if hard_negative:  # Eq. 6
                s_w_max = max(sim(anchor, i, w, j) for w, j in negatives)
                x = lam * (s_pos - max(s_v)) + (1 - lam) * (min(s_v) - s_w_max)
                total = total - logsigmoid(x)
            else:  # Eq. 5
                acc = 0.0
                for sv in s_v:
                    for w, j in negatives:
                        acc = acc + logsigmoid(lam * (s_pos - sv) + (1 - lam) * (sv - sim(anchor, i, w, j)))
                total = total - acc / (2 * len(negatives))
    return total / (2 * B)


def ref_accuracies(vecs):
    B = len(vecs["h"])
    sim = make_sim(vecs, cos_math)
    imp = imp_n = exp_ = exp_n = 0
    for anchor, partner, pair in (("h", "hp", ("t", "tp")), ("t", "tp", ("h", "hp"))):
        for i in range(B):
            s_pos = sim(anchor, i, partner, i)
            for v in pair:
                s_v = sim(anchor, i, v, i)
                imp += s_pos > s_v
                imp_n += 1
                for j in range(B):
                    if j == i:
                        continue
                    for w in VIEWS:
                        exp_ += s_v > sim(anchor, i, w, j)
                        exp_n += 1
    return imp / imp_n, exp_ / exp_n


# ------------------------------------------------------------------------------------------- inputs
def random_views(B, d=8, seed=0, cross_noise=None):
    """Four float64 (B, d) tensors, not normalised; with cross_noise, views are noisy copies of one base."""
    g = torch.Generator().manual_seed(seed)
    if cross_noise is None:
        return tuple(torch.randn(B, d, generator=g, dtype=torch.float64) * 3 for _ in range(4))
    base = torch.randn(B, d, generator=g, dtype=torch.float64)
    return tuple(base + cross_noise * torch.randn(B, d, generator=g, dtype=torch.float64) for _ in range(4))


def from_angles(rows):
    """rows[i] = (angle of u^_i, u^+_i, u~_i, u~+_i) in degrees -> four (B, 2) float64 tensors."""
    out = []
    for k in range(4):
        rad = torch.tensor([math.radians(r[k]) for r in rows], dtype=torch.float64)
        out.append(torch.stack((torch.cos(rad), torch.sin(rad)), dim=1))
    return tuple(out)


def c(a, b):
    return math.cos(math.radians(a - b))


def nls(x):  # -log sigmoid
    return math.log1p(math.exp(-x))


# ------------------------------------------------------------------------------------------- loss vs reference
GRID = []
for _B in (2, 3, 16):
    for _ranking in (True, False):
        for _hard in (True, False):
            for _est in ("sample", "batch"):
                GRID.append((_B, "adaptive", 0.5, _est, _hard, _ranking))
                for _fl in (0.0, 0.3, 1.0):
                    GRID.append((_B, "fixed", _fl, _est, _hard, _ranking))


@pytest.mark.parametrize("B,lambda_mode,fixed_lambda,lambda_estimate,hard_negative,ranking", GRID)
def test_loss_matches_loop_reference(B, lambda_mode, fixed_lambda, lambda_estimate, hard_negative, ranking):
    views = random_views(B, seed=B)
    opts = dict(lambda_mode=lambda_mode, fixed_lambda=fixed_lambda, lambda_estimate=lambda_estimate,
                hard_negative=hard_negative, ranking=ranking, infonce_temperature=0.5)
    got = adaptssr_loss(*views, **opts)
    assert got.dim() == 0 and got.dtype == torch.float64
    want = ref_loss(as_math(*views), **opts)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), **TIGHT)


@pytest.mark.parametrize("temperature", [1.0, 0.07, 2.5])
@pytest.mark.parametrize("B", [2, 5])
def test_infonce_temperature_and_ignored_pos(B, temperature):
    h, hp, t, tp = random_views(B, seed=7)
    got = adaptssr_loss(h, None, t, None, ranking=False, infonce_temperature=temperature)
    want = ref_loss(as_math(h, hp, t, tp), ranking=False, infonce_temperature=temperature)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), **TIGHT)
    torch.testing.assert_close(adaptssr_loss(h, hp, t, tp, ranking=False, infonce_temperature=temperature), got)


def test_infonce_on_inner_products():
    """``infonce_similarity="dot"``: each anchor's positive is its other view among both views of every other
    sample, scored by raw inner products (a loop reference); scaling the inputs changes it, unlike cosine."""
    B, temperature = 4, 0.5
    h, _, t, _ = random_views(B, seed=11)
    z = torch.cat((h, t))
    want = 0.0
    for i in range(2 * B):
        logits = [float(z[i] @ z[j]) / temperature for j in range(2 * B) if j != i]
        positive = float(z[i] @ z[(i + B) % (2 * B)]) / temperature
        want += -positive + math.log(sum(math.exp(x) for x in logits))
    got = adaptssr_loss(h, None, t, None, ranking=False, infonce_temperature=temperature, infonce_similarity="dot")
    torch.testing.assert_close(got, torch.tensor(want / (2 * B), dtype=torch.float64), **TIGHT)
    cosine = adaptssr_loss(h, None, t, None, ranking=False, infonce_temperature=temperature)
    assert adaptssr_loss(2 * h, None, 2 * t, None, ranking=False, infonce_temperature=temperature) == \
        pytest.approx(float(cosine), rel=1e-12)
    assert float(adaptssr_loss(2 * h, None, 2 * t, None, ranking=False, infonce_temperature=temperature,
                               infonce_similarity="dot")) != pytest.approx(float(got), rel=1e-3)
    with pytest.raises(ValueError, match="infonce_similarity must be one of \\['cos', 'dot'\\], got 'l2'"):
        adaptssr_loss(h, None, t, None, ranking=False, infonce_similarity="l2")


@pytest.mark.parametrize("lambda_mode,lambda_estimate", [("adaptive", "sample"), ("adaptive", "batch"),
                                                          ("fixed", "sample")])
def test_lambda_matches_reference(lambda_mode, lambda_estimate):
    views = [x.requires_grad_() for x in random_views(6, seed=3, cross_noise=0.8)]
    lam_hat, lam_tilde = adaptssr_lambda(*views, lambda_mode=lambda_mode, fixed_lambda=0.3,
                                         lambda_estimate=lambda_estimate)
    want_hat, want_tilde = ref_lambda(as_math(*[v.detach() for v in views]), lambda_mode, 0.3, lambda_estimate)
    assert lam_hat.shape == lam_tilde.shape == (6,)
    assert not lam_hat.requires_grad and not lam_tilde.requires_grad
    torch.testing.assert_close(lam_hat, torch.tensor(want_hat, dtype=torch.float64), **TIGHT)
    torch.testing.assert_close(lam_tilde, torch.tensor(want_tilde, dtype=torch.float64), **TIGHT)


# ------------------------------------------------------------------------------------------- crafted cases
# sample 0: u~_0 at 120 deg from u^_0 (negative cross sims), u~+_0 at 60 deg; sample 1: all cross sims positive.
CLAMP_ROWS = [(0, 0, 120, 60), (200, 210, 230, 250)]


def test_clamp_matters_in_sample_lambda():
    views = from_angles(CLAMP_ROWS)
    lam_hat, lam_tilde = adaptssr_lambda(*views)
    lam1 = 1 - (c(200, 230) + c(200, 250) + c(210, 230) + c(210, 250)) / 4
    torch.testing.assert_close(lam_hat, torch.tensor([0.75, lam1], dtype=torch.float64), **TIGHT)  # unclamped: 1.0
    torch.testing.assert_close(lam_tilde, lam_hat)
    vecs = as_math(*views)
    for hard in (True, False):
        got = adaptssr_loss(*views, hard_negative=hard)
        torch.testing.assert_close(got, torch.tensor(ref_loss(vecs, hard_negative=hard), dtype=torch.float64),
                                   **TIGHT)
        unclamped = ref_loss(vecs, hard_negative=hard, clamp=False)
        assert abs(got.item() - unclamped) > 1e-3


def test_batch_lambda_is_unclamped_mean_per_anchor_view():
    views = from_angles(CLAMP_ROWS)
    lam_hat, lam_tilde = adaptssr_lambda(*views, lambda_estimate="batch")
    want_hat = 1 - (c(0, 120) + c(0, 60) + c(200, 230) + c(200, 250)) / 4
    want_tilde = 1 - (c(120, 0) + c(120, 0) + c(230, 200) + c(230, 210)) / 4
    torch.testing.assert_close(lam_hat, torch.full((2,), want_hat, dtype=torch.float64), **TIGHT)
    torch.testing.assert_close(lam_tilde, torch.full((2,), want_tilde, dtype=torch.float64), **TIGHT)


def test_hard_negative_selection_by_hand():
    # 2-D unit vectors at these angles; each anchor's hardest v / w worked out by hand below.
    views = from_angles([(0, 10, 30, 50), (100, 120, 170, 200)])
    lam = 0.3
    terms = [
        # anchor u^_0=0: a+=10, V={30,50}: max cos30, min cos50; U- at 100,120,170,200 -> hardest 100
        lam * (c(0, 10) - c(0, 30)) + (1 - lam) * (c(0, 50) - c(0, 100)),
        # anchor u~_0=30: a+=50, V={0,10}: max is the SECOND (10), min the first (0); hardest w 100
        lam * (c(30, 50) - c(30, 10)) + (1 - lam) * (c(30, 0) - c(30, 100)),
        # anchor u^_1=100: a+=120, V={170,200}: max 170, min 200; U- at 0,10,30,50 -> hardest 50
        lam * (c(100, 120) - c(100, 170)) + (1 - lam) * (c(100, 200) - c(100, 50)),
        # anchor u~_1=170: a+=200, V={100,120}: max 120, min 100; hardest w 50
        lam * (c(170, 200) - c(170, 120)) + (1 - lam) * (c(170, 100) - c(170, 50)),
    ]
    want = sum(nls(x) for x in terms) / 4
    got = adaptssr_loss(*views, lambda_mode="fixed", fixed_lambda=lam)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), **TIGHT)
    eq5 = adaptssr_loss(*views, lambda_mode="fixed", fixed_lambda=lam, hard_negative=False)
    torch.testing.assert_close(eq5, torch.tensor(ref_loss(as_math(*views), lambda_mode="fixed", fixed_lambda=lam,
                                                          hard_negative=False), dtype=torch.float64), **TIGHT)
    assert abs(got.item() - eq5.item()) > 1e-3


def test_inputs_need_not_be_normalised():
    views = random_views(4, seed=11)
    scaled = [x * s for x, s in zip(views, (0.01, 5.0, 123.0, 0.7))]
    for hard in (True, False):
        got = adaptssr_loss(*scaled, hard_negative=hard)
        torch.testing.assert_close(got, adaptssr_loss(*views, hard_negative=hard), **TIGHT)


# ------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("lambda_estimate", ["sample", "batch"])
@pytest.mark.parametrize("hard_negative", [True, False])
def test_no_gradient_through_lambda(lambda_estimate, hard_negative):
    # views are noisy copies of one base, so cross-view sims are positive and the clamp does not hide lambda
    leaves = [x.requires_grad_() for x in random_views(3, d=4, seed=5, cross_noise=0.5)]
    opts = dict(lambda_estimate=lambda_estimate, hard_negative=hard_negative)
    loss = adaptssr_loss(*leaves, **opts)
    grad = torch.autograd.grad(loss, leaves)

    rows = as_rows(*leaves)
    const = ref_loss(rows, cos=cos_tensor, detach=True, **opts)  # lambda replaced by constants of its value
    grad_const = torch.autograd.grad(const, leaves)
    live = ref_loss(rows, cos=cos_tensor, detach=False, **opts)  # lambda NOT detached
    grad_live = torch.autograd.grad(live, leaves)

    torch.testing.assert_close(loss, const, **TIGHT)
    torch.testing.assert_close(live, const, **TIGHT)  # same value ...
    for g, gc in zip(grad, grad_const):
        torch.testing.assert_close(g, gc, rtol=1e-9, atol=1e-12)
    diff = max((g - gl).abs().max().item() for g, gl in zip(grad, grad_live))
    assert diff > 1e-4  # ... but a different gradient if lambda were not detached


@pytest.mark.parametrize("lambda_mode,lambda_estimate", [("adaptive", "sample"), ("adaptive", "batch"),
                                                          ("fixed", "sample")])
@pytest.mark.parametrize("hard_negative", [True, False])
def test_gradient_reaches_all_four_inputs(lambda_mode, lambda_estimate, hard_negative):
    leaves = [x.float().requires_grad_() for x in random_views(8, d=16, seed=2)]
    adaptssr_loss(*leaves, lambda_mode=lambda_mode, lambda_estimate=lambda_estimate,
                  hard_negative=hard_negative).backward()
    for x in leaves:
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------- ranking accuracies
@pytest.mark.parametrize("B", [2, 3, 16])
def test_ranking_accuracies_match_reference(B):
    views = random_views(B, seed=100 + B, cross_noise=1.0)
    imp, exp_ = ranking_accuracies(*views)
    want_imp, want_exp = ref_accuracies(as_math(*views))
    assert imp == pytest.approx(want_imp, abs=1e-12)
    assert exp_ == pytest.approx(want_exp, abs=1e-12)


def test_ranking_accuracies_hand_made():
    # dropout partners 1 deg apart, explicit views 10 deg apart, samples 120 deg apart: every order holds
    views = from_angles([(0, 1, 10, 11), (120, 121, 130, 131), (240, 241, 250, 251)])
    assert ranking_accuracies(*views) == (1.0, 1.0)
    # u^_i = u~_i = e_i, u^+_i = u~+_i = -e_i, e_0 orthogonal to e_1: sim(a,a+) = -1 never beats v (1 or -1);
    # v = +e_i (sim 1) beats every w (sim 0), v = -e_i (sim -1) beats none -> (0, 1/2)
    e = torch.eye(2, dtype=torch.float64)
    assert ranking_accuracies(e, -e, e, -e) == (0.0, 0.5)


def ref_hard_constraints(vecs):
    """Per anchor (hat anchors, then tilde anchors), by brute force over every candidate: (a+ beats both views of
    the other pair, both views of the other pair beat every view of every other sample)."""
    B = len(vecs["h"])
    sim = make_sim(vecs, cos_math)
    implicit, explicit = [], []
    for anchor, partner, pair in (("h", "hp", ("t", "tp")), ("t", "tp", ("h", "hp"))):
        for i in range(B):
            implicit.append(all(sim(anchor, i, partner, i) > sim(anchor, i, v, i) for v in pair))
            explicit.append(all(sim(anchor, i, v, i) > sim(anchor, i, w, j)
                                for v in pair for j in range(B) if j != i for w in VIEWS))
    return implicit, explicit


@pytest.mark.parametrize("B,noise", [(2, 1.0), (5, 0.5), (16, 1.0), (32, 0.4)])
def test_hard_ranking_constraints_match_brute_force(B, noise):
    views = random_views(B, seed=300 + B, cross_noise=noise)
    implicit, explicit = hard_ranking_constraints(*views)
    want_implicit, want_explicit = ref_hard_constraints(as_math(*views))
    assert implicit.dtype == torch.bool and implicit.shape == (2 * B,)
    assert implicit.tolist() == want_implicit and explicit.tolist() == want_explicit
    assert 0 < sum(want_explicit) < 2 * B and 0 < sum(want_implicit) < 2 * B  # anchors that hold and that fail


def test_hard_constraint_is_stricter_than_the_pairwise_accuracy():
    """16 users with noisy views: 91 % of the pairwise orders hold, but only 3 of 32 anchors beat their hardest
    negative (the gap the issue measured on random views: 0.97 pairwise against 0.56-0.63 hard)."""
    views = random_views(16, seed=316, cross_noise=1.0)
    _, explicit = hard_ranking_constraints(*views)
    assert ranking_accuracies(*views)[1] > 0.9 and int(explicit.sum()) == 3


# ------------------------------------------------------------------------------------------- errors
def test_error_batch_of_one():
    views = random_views(1)
    with pytest.raises(ValueError, match="at least 2"):
        adaptssr_loss(*views)
    with pytest.raises(ValueError, match="at least 2"):
        adaptssr_loss(*views, ranking=False)
    with pytest.raises(ValueError, match="at least 2"):
        ranking_accuracies(*views)


def test_error_shape_mismatch():
    h, hp, t, tp = random_views(4)
    with pytest.raises(ValueError, match="same shape"):
        adaptssr_loss(h, hp[:3], t, tp)
    with pytest.raises(ValueError, match="same shape"):
        adaptssr_loss(h, hp, t[:, :5], tp, ranking=False)
    with pytest.raises(ValueError, match=r"2-D \(B, d\)"):
        adaptssr_loss(h[0], hp[0], t[0], tp[0])


def test_error_missing_pos_when_ranking():
    h, _, t, _ = random_views(4)
    with pytest.raises(ValueError, match="u_hat_pos is required"):
        adaptssr_loss(h, None, t, None)


def test_error_unknown_options():
    views = random_views(4)
    with pytest.raises(ValueError, match=r"lambda_mode must be one of \['adaptive', 'fixed'\], got 'adaptve'"):
        adaptssr_loss(*views, lambda_mode="adaptve")
    with pytest.raises(ValueError, match=r"lambda_estimate must be one of \['sample', 'batch'\]"):
        adaptssr_lambda(*views, lambda_mode="adaptive", fixed_lambda=0.5, lambda_estimate="mean")
    with pytest.raises(ValueError, match="hard_negative must be True or False"):
        adaptssr_loss(*views, hard_negative="False")
    with pytest.raises(ValueError, match="infonce_temperature must be"):
        adaptssr_loss(*views, ranking=False, infonce_temperature=0.0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_error_fixed_lambda_out_of_range(bad):
    with pytest.raises(ValueError, match=r"fixed_lambda must be in \[0, 1\]"):
        adaptssr_loss(*random_views(4), lambda_mode="fixed", fixed_lambda=bad)

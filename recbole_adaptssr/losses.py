"""AdaptSSR losses (Yu et al., NeurIPS 2023, section 3.3-3.4) as pure torch functions.

Notation: ``u_hat``/``u_hat_pos`` are two dropout passes of the explicit view f(S_i), ``u_tilde``/``u_tilde_pos``
two passes of g(S_i); all are (B, d) and are L2-normalised here, so sim = cosine = dot product. The in-batch
negatives of sample i are U-_i = {u^_j, u^+_j, u~_j, u~+_j : j != i} (4(B-1) vectors).

- Eq. 5: multiple pairwise ranking loss averaged over all quadruples (v, w), v in the other view's pair.
- Eq. 6: the same with in-batch hard negatives (max/min over v, max over w in U-_i). L = sum_i (L^_i + L~_i) / 2B.
- Eq. 7: augmentation-adaptive fusion lambda_i = 1 - mean of the 4 clamped cross-view similarities; or the
  authors' release estimate (one scalar per batch and anchor view, unclamped); or a fixed lambda. Always detached.
- Eq. 9: symmetric InfoNCE on the two explicit views (the "w/o SSR" ablation, ``ranking=False``).
- Diagnostics: :func:`ranking_accuracies` (pairwise shares over all candidates) and
  :func:`hard_ranking_constraints` (per anchor, whether Eq. 6's two rankings hold against the hardest candidates).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

__all__ = ["LAMBDA_MODES", "LAMBDA_ESTIMATES", "INFONCE_SIMILARITIES", "adaptssr_loss", "adaptssr_lambda", "ranking_accuracies",
           "hard_ranking_constraints"]

LAMBDA_MODES = ("adaptive", "fixed")
LAMBDA_ESTIMATES = ("sample", "batch")
#: the InfoNCE ablation's similarity: cos (Eq. 9, on L2-normalised views) | dot (inner product)
INFONCE_SIMILARITIES = ("cos", "dot")


# --------------------------------------------------------------------------------------------- validation
def _check_choice(name, value, allowed):
    """Reject an option value outside ``allowed``, naming the option, so config typos fail loudly."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_bool(name, value):
    """Reject non-bool flags (e.g. the string 'False', which is truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_lambda_options(lambda_mode, fixed_lambda, lambda_estimate):
    """Validate the fusion-coefficient options; fixed_lambda must lie in [0, 1] when it is used."""
    _check_choice("lambda_mode", lambda_mode, LAMBDA_MODES)
    _check_choice("lambda_estimate", lambda_estimate, LAMBDA_ESTIMATES)
    if lambda_mode == "fixed":
        try:
            value = float(fixed_lambda)
        except (TypeError, ValueError):
            raise ValueError(f"fixed_lambda must be a number in [0, 1], got {fixed_lambda!r}") from None
        if not 0.0 <= value <= 1.0:  # also rejects NaN
            raise ValueError(f"fixed_lambda must be in [0, 1], got {fixed_lambda!r}")


def _check_views(**views):
    """Check that the given views are (B, d) tensors of one shape with B >= 2; return B."""
    for name, x in views.items():
        if x is None:
            raise ValueError(f"{name} is required (got None); it may only be None when ranking=False")
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a 2-D (B, d) tensor, got {shape}")
    shapes = {name: tuple(x.shape) for name, x in views.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"all representations must have the same shape (B, d), got shapes {shapes}")
    batch = next(iter(shapes.values()))[0]
    if batch < 2:
        raise ValueError(f"batch size B must be at least 2 (in-batch negatives come from other samples), got B={batch}")
    return batch


# --------------------------------------------------------------------------------------------- building blocks
def _normalize(*xs):
    """L2-normalise each (B, d) tensor so that dot products are cosine similarities."""
    return tuple(F.normalize(x, p=2, dim=-1) for x in xs)


def _rowdot(a, b):
    """Row-wise dot product of two (B, d) tensors -> (B,)."""
    return (a * b).sum(dim=-1)


def _same_sample_mask(batch, device):
    """(B, 4B) bool mask, True where column c of the view-major stack [u^; u^+; u~; u~+] belongs to row i's sample."""
    cols = torch.arange(4 * batch, device=device) % batch
    return cols.unsqueeze(0) == torch.arange(batch, device=device).unsqueeze(1)


def _anchor_sims(anchor, partner, v1, v2, stacked):
    """Similarities an anchor needs: to its dropout partner (B,), to the other view's pair (B, 2), to all 4B vectors."""
    sim_pos = _rowdot(anchor, partner)
    sim_v = torch.stack((_rowdot(anchor, v1), _rowdot(anchor, v2)), dim=1)
    sim_all = anchor @ stacked.T
    return sim_pos, sim_v, sim_all


def _lambda_normalized(h, hp, t, tp, lambda_mode, fixed_lambda, lambda_estimate):
    """Detached fusion coefficients (lam_hat, lam_tilde), each (B,), from already-normalised views."""
    batch = h.shape[0]
    with torch.no_grad():
        if lambda_mode == "fixed":
            lam = torch.full((batch,), float(fixed_lambda), dtype=h.dtype, device=h.device)
            return lam, lam
        if lambda_estimate == "sample":  # Eq. 7: per-sample, clamped at 0, shared by both anchors
            cross = torch.stack((_rowdot(h, t), _rowdot(h, tp), _rowdot(hp, t), _rowdot(hp, tp)), dim=1)
            lam = 1.0 - cross.clamp(min=0.0).mean(dim=1)
            return lam, lam
        # authors' release: one unclamped scalar per batch and anchor view
        lam_hat = 1.0 - torch.stack((_rowdot(h, t), _rowdot(h, tp))).mean()
        lam_tilde = 1.0 - torch.stack((_rowdot(t, h), _rowdot(t, hp))).mean()
        return lam_hat.expand(batch).contiguous(), lam_tilde.expand(batch).contiguous()


def _anchor_loss(anchor, partner, v1, v2, stacked, same, lam, hard_negative):
    """Per-sample ranking loss (B,) for one anchor view: Eq. 6 (hard negatives) or Eq. 5 (all quadruples)."""
    sim_pos, sim_v, sim_all = _anchor_sims(anchor, partner, v1, v2, stacked)
    if hard_negative:
        hardest_w = sim_all.masked_fill(same, float("-inf")).amax(dim=1)
        logit = lam * (sim_pos - sim_v.amax(dim=1)) + (1.0 - lam) * (sim_v.amin(dim=1) - hardest_w)
        return -F.logsigmoid(logit)
    lam3 = lam[:, None, None]
    logit = lam3 * (sim_pos[:, None, None] - sim_v[:, :, None]) + (1.0 - lam3) * (
        sim_v[:, :, None] - sim_all[:, None, :]
    )  # (B, 2, 4B)
    log_sig = F.logsigmoid(logit).masked_fill(same[:, None, :], 0.0)
    n_neg = sim_all.shape[1] - 4  # |U-_i| = 4(B-1)
    return -log_sig.sum(dim=(1, 2)) / (2 * n_neg)


def _symmetric_infonce(h, t, temperature):
    """Eq. 9 for both anchors: positive = the other explicit view, negatives = both views of other samples."""
    batch = h.shape[0]
    z = torch.cat((h, t), dim=0)
    logits = (z @ z.T) / temperature
    eye = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    target = (torch.arange(2 * batch, device=z.device) + batch) % (2 * batch)
    return F.cross_entropy(logits, target)


# --------------------------------------------------------------------------------------------- public API
def adaptssr_lambda(u_hat, u_hat_pos, u_tilde, u_tilde_pos, *, lambda_mode="adaptive", fixed_lambda=0.5,
                    lambda_estimate="sample"):
    """Detached fusion coefficients (lam_hat, lam_tilde), each (B,), as used by adaptssr_loss (for logging)."""
    _check_views(u_hat=u_hat, u_hat_pos=u_hat_pos, u_tilde=u_tilde, u_tilde_pos=u_tilde_pos)
    _check_lambda_options(lambda_mode, fixed_lambda, lambda_estimate)
    h, hp, t, tp = _normalize(u_hat, u_hat_pos, u_tilde, u_tilde_pos)
    return _lambda_normalized(h, hp, t, tp, lambda_mode, fixed_lambda, lambda_estimate)


def adaptssr_loss(u_hat, u_hat_pos, u_tilde, u_tilde_pos, *, lambda_mode="adaptive", fixed_lambda=0.5,
                  lambda_estimate="sample", hard_negative=True, ranking=True, infonce_temperature=1.0,
                  infonce_similarity="cos"):
    """Scalar AdaptSSR pre-training loss (Eq. 5/6 with Eq. 7 fusion), or symmetric InfoNCE (Eq. 9) if not ranking
    (on cosine similarities, or on inner products with ``infonce_similarity="dot"``)."""
    _check_lambda_options(lambda_mode, fixed_lambda, lambda_estimate)
    _check_choice("infonce_similarity", infonce_similarity, INFONCE_SIMILARITIES)
    _check_bool("hard_negative", hard_negative)
    _check_bool("ranking", ranking)
    if isinstance(infonce_temperature, bool) or not isinstance(infonce_temperature, numbers.Real) or not (
        math.isfinite(infonce_temperature) and infonce_temperature > 0
    ):
        raise ValueError(f"infonce_temperature must be a finite number > 0, got {infonce_temperature!r}")

    if not ranking:
        _check_views(u_hat=u_hat, u_tilde=u_tilde)
        h, t = _normalize(u_hat, u_tilde) if infonce_similarity == "cos" else (u_hat, u_tilde)
        return _symmetric_infonce(h, t, float(infonce_temperature))

    batch = _check_views(u_hat=u_hat, u_hat_pos=u_hat_pos, u_tilde=u_tilde, u_tilde_pos=u_tilde_pos)
    h, hp, t, tp = _normalize(u_hat, u_hat_pos, u_tilde, u_tilde_pos)
    lam_hat, lam_tilde = _lambda_normalized(h, hp, t, tp, lambda_mode, fixed_lambda, lambda_estimate)
    stacked = torch.cat((h, hp, t, tp), dim=0)  # view-major (4B, d)
    same = _same_sample_mask(batch, h.device)
    loss_hat = _anchor_loss(h, hp, t, tp, stacked, same, lam_hat, hard_negative)
    loss_tilde = _anchor_loss(t, tp, h, hp, stacked, same, lam_tilde, hard_negative)
    return torch.cat((loss_hat, loss_tilde)).mean()  # sum_i (L^_i + L~_i) / 2B


@torch.no_grad()
def ranking_accuracies(u_hat, u_hat_pos, u_tilde, u_tilde_pos):
    """(acc_implicit, acc_explicit) as floats: shares of sim(a,a+) > sim(a,v) and sim(a,v) > sim(a,w), both anchors."""
    batch = _check_views(u_hat=u_hat, u_hat_pos=u_hat_pos, u_tilde=u_tilde, u_tilde_pos=u_tilde_pos)
    h, hp, t, tp = _normalize(u_hat, u_hat_pos, u_tilde, u_tilde_pos)
    stacked = torch.cat((h, hp, t, tp), dim=0)
    keep = ~_same_sample_mask(batch, h.device)
    implicit_hits = explicit_hits = 0
    for anchor, partner, v1, v2 in ((h, hp, t, tp), (t, tp, h, hp)):
        sim_pos, sim_v, sim_all = _anchor_sims(anchor, partner, v1, v2, stacked)
        implicit_hits += int((sim_pos[:, None] > sim_v).sum())
        explicit_hits += int(((sim_v[:, :, None] > sim_all[:, None, :]) & keep[:, None, :]).sum())
    n_implicit = 2 * batch * 2
    n_explicit = 2 * batch * 2 * 4 * (batch - 1)
    return implicit_hits / n_implicit, explicit_hits / n_explicit


@torch.no_grad()
def hard_ranking_constraints(u_hat, u_hat_pos, u_tilde, u_tilde_pos):
    """Per anchor, whether the two rankings of Eq. 6 hold against the hardest candidates: ``(implicit, explicit)``,
    each a (2B,) bool tensor, the u^ anchors of samples 0..B-1 first, then the u~ anchors.

    * implicit: ``sim(a, a+) > max_{v in the other view's pair} sim(a, v)``;
    * explicit: ``min_v sim(a, v) > max_{w in U-_i} sim(a, w)``: the anchor's farther explicit view still beats its
      hardest in-batch negative (what the hard-negative term of Eq. 6 asks; :func:`ranking_accuracies` averages
      the pairwise orders over all negatives instead)."""
    batch = _check_views(u_hat=u_hat, u_hat_pos=u_hat_pos, u_tilde=u_tilde, u_tilde_pos=u_tilde_pos)
    h, hp, t, tp = _normalize(u_hat, u_hat_pos, u_tilde, u_tilde_pos)
    stacked = torch.cat((h, hp, t, tp), dim=0)
    same = _same_sample_mask(batch, h.device)
    implicit, explicit = [], []
    for anchor, partner, v1, v2 in ((h, hp, t, tp), (t, tp, h, hp)):
        sim_pos, sim_v, sim_all = _anchor_sims(anchor, partner, v1, v2, stacked)
        implicit.append(sim_pos > sim_v.amax(dim=1))
        explicit.append(sim_v.amin(dim=1) > sim_all.masked_fill(same, float("-inf")).amax(dim=1))
    return torch.cat(implicit), torch.cat(explicit)

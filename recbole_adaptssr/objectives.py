"""Objectives of the baseline pretext tasks (CL4SRec, CLUE, DuoRec, Barlow Twins, PTUM) as pure torch functions.

Every function is batched (no per-sample Python loop), works on the device of its inputs and is independent of
how the views were made, so any augmentation can feed it. This module imports torch and math only (not RecBole,
not the rest of the package). AdaptSSR's own losses (Eq. 5-9) are in :mod:`recbole_adaptssr.losses`.

* In-batch contrastive learning (InfoNCE / NT-Xent): :func:`info_nce` (CL4SRec, CLUE, DuoRec's release) and
  :func:`supervised_info_nce` (DuoRec: in-batch samples sharing the anchor's label -- its last behaviour -- are
  removed from the negatives, kept as negatives, or counted as extra positives), both built on
  :func:`contrastive_logits`; :func:`top1_accuracy` is the share of anchors whose positive is ranked first.
* Barlow Twins (Zbontar et al., 2021): :func:`cross_correlation` of the batch-standardised embeddings of two
  views and :func:`barlow_twins_loss` (on-diagonal to 1, off-diagonal to 0).
* PTUM's behaviour prediction from u: :func:`candidate_logits` (a positive item against sampled negative items,
  or against every item) and :func:`sampled_softmax_loss`.
* :func:`mean_offdiagonal_cosine`: how alike the representations of different users are (a collapse signal).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "SIMILARITIES",
    "NEGATIVES",
    "SAME_LABEL",
    "similarity_matrix",
    "contrastive_logits",
    "multi_positive_cross_entropy",
    "info_nce",
    "supervised_info_nce",
    "top1_accuracy",
    "mean_offdiagonal_cosine",
    "standardize",
    "cross_correlation",
    "barlow_twins_loss",
    "candidate_logits",
    "sampled_softmax_loss",
]

#: ``dot``: inner product (CL4SRec, DuoRec); ``cos``: cosine (inner product of L2-normalised vectors).
SIMILARITIES = ("dot", "cos")
#: ``both_views``: the 2(B-1) other samples of both views are negatives (NT-Xent, CL4SRec, DuoRec);
#: ``other_view``: only the B-1 other samples of the other view (CLIP-style symmetric InfoNCE).
NEGATIVES = ("both_views", "other_view")
#: What an in-batch sample sharing the anchor's label is: ``keep`` a negative (DuoRec's release), ``mask`` neither
#: negative nor positive (a false negative, removed from the denominator), ``positive`` an extra positive (SupCon).
SAME_LABEL = ("keep", "mask", "positive")


def _check_choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_pair(z1, z2, minimum=2):
    if not (isinstance(z1, torch.Tensor) and isinstance(z2, torch.Tensor)) or z1.dim() != 2 or z1.shape != z2.shape:
        shapes = [tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__ for z in (z1, z2)]
        raise ValueError(f"z1 and z2 must be (B, d) tensors of one shape, got {shapes}")
    if z1.shape[0] < minimum:
        raise ValueError(f"batch size must be at least {minimum}, got B={z1.shape[0]}")
    return z1.shape[0]


# --------------------------------------------------------------------------------------------- InfoNCE
def similarity_matrix(a: torch.Tensor, b: torch.Tensor, similarity: str = "dot") -> torch.Tensor:
    """(N, d) x (M, d) -> (N, M) inner products, of L2-normalised rows for ``cos``."""
    _check_choice("similarity", similarity, SIMILARITIES)
    if similarity == "cos":
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return a @ b.T


def contrastive_logits(z1, z2, *, temperature=1.0, similarity="dot", negatives="both_views", labels=None,
                       same_label="keep"):
    """Logits and positives of the symmetric in-batch contrastive task on two views of B samples.

    The 2B anchors are the rows of ``z = [z1; z2]``; anchor i's positive is the other view of its sample. Returns
    ``(logits, positives)``, both (2B, 2B): ``logits[a, c] = sim(z_a, z_c) / temperature``, ``-inf`` where c is not
    a candidate of a (c = a; c in a's own view for ``negatives="other_view"``; a masked same-label sample), and the
    bool mask of a's positives. ``labels`` (B,) with ``same_label`` treat samples j != i with ``labels[j] ==
    labels[i]`` (both their views) as in :data:`SAME_LABEL`.
    """
    batch = _check_pair(z1, z2)
    _check_positive("temperature", temperature)
    _check_choice("negatives", negatives, NEGATIVES)
    _check_choice("same_label", same_label, SAME_LABEL)
    z = torch.cat((z1, z2), dim=0)
    logits = similarity_matrix(z, z, similarity) / temperature
    index = torch.arange(2 * batch, device=z.device)
    sample, view = index % batch, index // batch
    self_pair = index[:, None] == index[None, :]
    positives = (sample[:, None] == sample[None, :]) & ~self_pair
    excluded = self_pair.clone()
    if negatives == "other_view":
        excluded |= view[:, None] == view[None, :]
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.shape != (batch,):
            raise ValueError(f"labels must be a ({batch},) tensor, got {getattr(labels, 'shape', type(labels))}")
        labels2 = torch.cat((labels, labels)).to(z.device)
        same = (labels2[:, None] == labels2[None, :]) & (sample[:, None] != sample[None, :])
        if same_label == "mask":
            excluded |= same
        elif same_label == "positive":
            positives |= same & ~excluded
    return logits.masked_fill(excluded, float("-inf")), positives


def multi_positive_cross_entropy(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-mean over the row's positives p of log softmax(logits_row)[p]`` (SupCon's L_out; with
    one positive per row it is the cross-entropy). Every row needs at least one positive."""
    if positives.shape != logits.shape:
        raise ValueError(f"positives must be a bool mask of the logits' shape {tuple(logits.shape)}")
    log_prob = torch.log_softmax(logits, dim=1)
    picked = torch.where(positives, log_prob, torch.zeros_like(log_prob))
    return -(picked.sum(dim=1) / positives.sum(dim=1)).mean()


def info_nce(z1, z2, temperature=1.0, negatives="both_views", similarity="dot") -> torch.Tensor:
    """Symmetric InfoNCE on two views (B, d): each sample's other view is its positive, the other samples are the
    negatives (NT-Xent with ``both_views``, as CL4SRec and DuoRec); the mean over the 2B anchors."""
    return multi_positive_cross_entropy(*contrastive_logits(
        z1, z2, temperature=temperature, similarity=similarity, negatives=negatives))


def supervised_info_nce(z1, z2, labels, temperature=1.0, same_label="mask", negatives="both_views",
                        similarity="dot") -> torch.Tensor:
    """:func:`info_nce` where in-batch samples sharing the anchor's label (DuoRec: its last behaviour) are masked
    out of the negatives (``mask``), kept as negatives (``keep``) or counted as extra positives (``positive``)."""
    return multi_positive_cross_entropy(*contrastive_logits(
        z1, z2, temperature=temperature, similarity=similarity, negatives=negatives, labels=labels,
        same_label=same_label))


@torch.no_grad()
def top1_accuracy(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Share of rows whose highest logit is one of their positives (ties: the first column)."""
    return positives.gather(1, logits.argmax(dim=1, keepdim=True)).float().mean()


@torch.no_grad()
def mean_offdiagonal_cosine(u: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between the representations of different rows of ``u`` (B >= 2): near 1 means the
    representations collapsed onto one direction."""
    batch = u.shape[0]
    if batch < 2:
        raise ValueError(f"mean_offdiagonal_cosine needs at least 2 rows, got {batch}")
    cos = similarity_matrix(u, u, "cos")
    return (cos.sum() - cos.diagonal().sum()) / (batch * (batch - 1))


# --------------------------------------------------------------------------------------------- Barlow Twins
def standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each column to zero mean and unit variance over the batch: ``BatchNorm1d(affine=False)`` in training mode
    (biased variance, ``eps`` inside the square root), as the Barlow Twins reference implementation."""
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(D, D) cross-correlation ``C = standardize(z1)^T standardize(z2) / B`` of two views (B, D)."""
    batch = _check_pair(z1, z2)
    return standardize(z1, eps).T @ standardize(z2, eps) / batch


def barlow_twins_loss(z1, z2, lambda_offdiag=0.0051, eps=1e-5) -> torch.Tensor:
    """``sum_i (1 - C_ii)^2 + lambda_offdiag * sum_{i != j} C_ij^2`` (Barlow Twins, Eq. 1)."""
    if isinstance(lambda_offdiag, bool) or not isinstance(lambda_offdiag, (int, float)) or not (
            math.isfinite(lambda_offdiag) and lambda_offdiag >= 0):
        raise ValueError(f"lambda_offdiag must be a finite number >= 0, got {lambda_offdiag!r}")
    c = cross_correlation(z1, z2, eps)
    on_diag = c.diagonal()
    off_diag_sq = c.pow(2).sum() - on_diag.pow(2).sum()
    return (1.0 - on_diag).pow(2).sum() + lambda_offdiag * off_diag_sq


# --------------------------------------------------------------------------------------------- item prediction
def candidate_logits(query, item_weight, targets, negatives=None, excluded_items=()):
    """Scores ``query . item_weight[c]`` of each query's candidate items, and the column of its target.

    ``negatives`` (N, P): candidates ``[target, negatives...]`` (target column 0); a negative equal to the target
    (an accidental hit) gets ``-inf``, as if it had been re-drawn. ``negatives=None``: every row of ``item_weight``
    is a candidate (full softmax), target column ``targets``, the ``excluded_items`` (padding, mask token) at -inf.
    """
    if query.dim() != 2 or targets.shape != query.shape[:1]:
        raise ValueError(f"query must be (N, d) and targets (N,), got {tuple(query.shape)} and {tuple(targets.shape)}")
    if negatives is None:
        logits = query @ item_weight.T
        if len(excluded_items):
            columns = torch.as_tensor(list(excluded_items), device=logits.device, dtype=torch.long)
            logits = logits.index_fill(1, columns, float("-inf"))
        return logits, targets
    if negatives.dim() != 2 or negatives.shape[0] != query.shape[0]:
        raise ValueError(f"negatives must be (N, P) with N={query.shape[0]}, got {tuple(negatives.shape)}")
    candidates = torch.cat((targets[:, None], negatives), dim=1)  # (N, 1 + P)
    logits = torch.einsum("nd,npd->np", query, item_weight[candidates])
    hit = torch.cat((torch.zeros_like(targets[:, None], dtype=torch.bool), negatives == targets[:, None]), dim=1)
    return logits.masked_fill(hit, float("-inf")), torch.zeros_like(targets)


def sampled_softmax_loss(query, item_weight, targets, negatives=None, excluded_items=()) -> torch.Tensor:
    """Mean cross-entropy of each target among its candidates (see :func:`candidate_logits`)."""
    logits, column = candidate_logits(query, item_weight, targets, negatives, excluded_items)
    return F.cross_entropy(logits, column)

"""Item correlation from a training corpus: the top-k correlated items of every item, as a dense table.

CoSeRec's ``substitute`` and ``insert`` operators (:mod:`recbole_adaptssr.augment.sequence`) replace an item by, or
insert next to it, a highly correlated item. CoSeRec's default correlation is ItemCF-IUF (Liu et al. 2021, and
its public code, ``OfflineItemSimilarity``); each measure here counts, over the training sequences, the sequences
that hold both items (an item counts once per sequence however often it occurs; an item is never correlated
with itself):

* ``count``:      ``C(i, j) = #{sequences holding i and j}``;
* ``itemcf``:     ``C(i, j) / sqrt(N(i) N(j))`` with ``N(i) = #{sequences holding i}`` (cosine of the item columns);
* ``itemcf_iuf``: ``sum over sequences u holding i and j of 1 / log(1 + |u|)``, divided by ``sqrt(N(i) N(j))``,
  with ``|u|`` the number of distinct items of ``u`` (inverse user frequency: long, active sequences say less about
  any one pair). CoSeRec's default.

The result is ``items (n_rows, k)``: row ``i`` holds the ``k`` items with the highest correlation to ``i``, best
first, ties broken by the smaller item id, padded with ``0`` (no item) where ``i`` co-occurs with fewer than ``k``
items; ``scores (n_rows, k)`` their correlations (0 on padding). Rows of ids that never occur (padding 0, the mask
token, items seen only in other splits) are all ``0``.

Computation: the binary (sequence x item) matrix X is sparse; ``C = X^T diag(w) X`` is computed with scipy's sparse
products, in blocks of item rows sized so that no block's product holds more than about ``block_nnz`` entries, and
the top k of each row is taken by k passes of segment maxima over the block's entries (no sort). No Python loop runs over sequences or items.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["MEASURES", "CorrelationTable", "item_correlation"]

#: Correlation measures, CoSeRec's first.
MEASURES = ("itemcf_iuf", "itemcf", "count")

DEFAULT_BLOCK_NNZ = 1 << 24


class CorrelationTable(NamedTuple):
    """The top-k correlated items of every item id (see the module docstring)."""

    items: torch.Tensor  # LongTensor (n_rows, k), 0 = no item
    scores: torch.Tensor  # float64 (n_rows, k), 0 on padding

    @property
    def counts(self) -> torch.Tensor:
        """Number of correlated items of each row (its non-padding entries), LongTensor (n_rows,)."""
        return (self.items != 0).sum(dim=1)


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _presence(item_seq: np.ndarray, item_seq_len: np.ndarray, n_rows: int) -> sp.csr_matrix:
    """Binary (sequences x n_rows) matrix: 1 where the sequence's valid part holds the item (ids in [1, n_rows))."""
    B, L = item_seq.shape
    valid = np.arange(L)[None, :] < item_seq_len[:, None]
    valid &= (item_seq > 0) & (item_seq < n_rows)
    rows, cols = np.nonzero(valid)
    X = sp.csr_matrix((np.ones(len(rows)), (rows, item_seq[rows, cols])), shape=(B, n_rows))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


def _row_blocks(cost: np.ndarray, budget: int) -> list:
    """Split rows into consecutive ``(lo, hi)`` blocks of summed ``cost`` at most ``budget`` (or one row)."""
    block = ((np.cumsum(cost) - cost) // budget).astype(np.int64)
    bounds = [0, *(np.flatnonzero(np.diff(block)) + 1).tolist(), len(cost)]
    return list(zip(bounds[:-1], bounds[1:]))


def _top_per_row(indptr, cols, vals, topk):
    """The ``topk`` (column, value) pairs of each CSR row with the largest positive values, best first, ties broken
    by the smaller column; 0-padded. One pass of segment maxima per rank: O(topk * nnz), no sort."""
    n_rows = len(indptr) - 1
    counts = np.diff(indptr)
    row_of = np.repeat(np.arange(n_rows), counts)
    starts = indptr[:-1][counts > 0]
    vals = np.array(vals, dtype=np.float64)
    out_cols = np.zeros((n_rows, topk), dtype=np.int64)
    out_vals = np.zeros((n_rows, topk), dtype=np.float64)
    for rank in range(topk):
        row_max = np.full(n_rows, -np.inf)
        if len(starts):
            row_max[counts > 0] = np.maximum.reduceat(vals, starts)
        candidates = np.flatnonzero((vals == row_max[row_of]) & (vals > 0))
        if not len(candidates):
            break
        candidate_rows = row_of[candidates]
        segments = np.flatnonzero(np.r_[True, candidate_rows[1:] != candidate_rows[:-1]])
        smallest = np.minimum.reduceat(cols[candidates], segments)
        chosen = candidates[cols[candidates] == np.repeat(smallest, np.diff(np.r_[segments, len(candidates)]))]
        out_cols[row_of[chosen], rank] = cols[chosen]
        out_vals[row_of[chosen], rank] = vals[chosen]
        vals[chosen] = -np.inf
    return out_cols, out_vals


def item_correlation(item_seq, item_seq_len, n_rows: int, topk: int, measure: str = "itemcf_iuf",
                     block_nnz: int = DEFAULT_BLOCK_NNZ) -> CorrelationTable:
    """The top-``topk`` correlated items of every id in ``[0, n_rows)`` from sequences ``item_seq (B, L)`` (left-aligned,
    0-padded, valid lengths ``item_seq_len (B,)``). Ids ``>= n_rows`` are ignored. See the module docstring."""
    if measure not in MEASURES:
        raise ValueError(f"correlation measure must be one of {list(MEASURES)}, got {measure!r}")
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"correlation topk must be an integer >= 1, got {topk!r}")
    seq = _as_numpy(item_seq).astype(np.int64, copy=False)
    lens = _as_numpy(item_seq_len).astype(np.int64, copy=False)
    if seq.ndim != 2 or lens.shape != (seq.shape[0],):
        raise ValueError(f"expected item_seq (B, L) and item_seq_len (B,), got {seq.shape} and {lens.shape}")
    X = _presence(seq, lens, n_rows)
    distinct = np.diff(X.indptr)  # |u|: distinct items per sequence
    if measure == "itemcf_iuf":
        weight = np.divide(1.0, np.log1p(distinct), out=np.zeros(len(distinct)), where=distinct > 0)
    else:
        weight = np.ones(len(distinct))
    XT = X.T.tocsr()  # (n_rows, B)
    WX = sp.diags(weight) @ X
    users_per_item = np.diff(XT.indptr).astype(np.float64)  # N(i)
    items = np.zeros((n_rows, topk), dtype=np.int64)
    scores = np.zeros((n_rows, topk), dtype=np.float64)
    cost = XT @ distinct.astype(np.float64) + 1.0  # entries of row i of C before summing: sum of |u| over u holding i
    for lo, hi in _row_blocks(cost, block_nnz):
        block = (XT[lo:hi] @ WX).tocsr()
        rows = np.repeat(np.arange(lo, hi), np.diff(block.indptr))
        vals = block.data
        if measure != "count":
            vals = vals / np.sqrt(users_per_item[rows] * users_per_item[block.indices])
        vals[rows == block.indices] = -np.inf  # an item is not correlated with itself
        items[lo:hi], scores[lo:hi] = _top_per_row(block.indptr, block.indices, vals, topk)
    return CorrelationTable(torch.from_numpy(items), torch.from_numpy(scores))

"""RecBole's full-sort evaluation batches, built with array operations.

RecBole's ``FullSortEvalDataLoader.collate_fn`` builds each batch's history and positive indices with a Python loop
over its users (a ``torch.full_like`` and a ``torch.cat`` per user, object-array look-ups keyed by 0-d tensors) and
copies the batch's users out of ``user_df`` by a list index: about 20 ms per batch of 256 users on one CPU core,
which caps an evaluation at ~13,000 users/s whatever the GPU. :func:`fast_full_sort` returns a view of such a
loader whose batches are the same tuples ``(users, (history_u, history_i), positive_u, positive_i)``, element for
element and in the same order, cut from arrays built once per loader (``tests/test_full_sort_batches.py``).

It applies to RecBole's own ``FullSortEvalDataLoader`` of a general (non-sequential) model iterated in order (no
distributed sampler); anything else is returned unchanged. ``full_sort_fast_batches: False`` turns it off.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.data.interaction import Interaction


class FullSortBatches:
    """The batches of ``loader`` (a ``FullSortEvalDataLoader``), as CSR arrays over its users."""

    def __init__(self, loader: FullSortEvalDataLoader):
        self.user_df = loader.user_df
        self.step = int(loader.step)
        uid = loader.user_df[loader.uid_field].numpy()
        self.n = len(uid)
        self.pos_ptr, self.pos_items = _csr(loader.uid2positive_item[uid])
        self.hist_ptr, self.hist_items = _csr(loader.uid2history_item[uid])

    def __len__(self) -> int:
        return -(-self.n // self.step)

    def __iter__(self):
        fields = self.user_df.interaction
        for start in range(0, self.n, self.step):
            end = min(self.n, start + self.step)
            users = Interaction({key: value[start:end].clone() for key, value in fields.items()})
            yield (users, _rows(self.hist_ptr, self.hist_items, start, end),
                   *_rows(self.pos_ptr, self.pos_items, start, end))


def _csr(tensors) -> tuple[np.ndarray, torch.Tensor]:
    lengths = np.fromiter((len(t) for t in tensors), dtype=np.int64, count=len(tensors))
    ptr = np.zeros(len(tensors) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    items = torch.cat(list(tensors)) if len(tensors) else torch.zeros(0, dtype=torch.int64)
    return ptr, items


def _rows(ptr: np.ndarray, items: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    counts = np.diff(ptr[start:end + 1])
    rows = torch.from_numpy(np.repeat(np.arange(end - start, dtype=np.int64), counts))
    return rows, items[ptr[start]:ptr[end]].clone()


class _FastFullSortLoader(FullSortEvalDataLoader):
    """A ``FullSortEvalDataLoader`` (same attributes, same ``isinstance``) iterating :class:`FullSortBatches`."""

    def __iter__(self):
        return iter(self._adaptssr_batches)

    def __len__(self):
        return len(self._adaptssr_batches)


def fast_full_sort(loader, enabled: bool = True):
    """``loader`` with array-built batches when it is RecBole's plain full-sort loader iterated in order (see the
    module docstring), else ``loader`` itself. The arrays are built on first use and kept on ``loader``."""
    if (not enabled or type(loader) is not FullSortEvalDataLoader or loader.is_sequential
            or not isinstance(loader.sampler, torch.utils.data.SequentialSampler)
            or loader.batch_size != loader.step or loader.drop_last or loader.num_workers):
        return loader
    batches = loader.__dict__.get("_adaptssr_batches")
    if batches is None or batches.step != loader.step or batches.user_df is not loader.user_df:
        batches = FullSortBatches(loader)
        loader.__dict__["_adaptssr_batches"] = batches
    view = object.__new__(_FastFullSortLoader)
    view.__dict__.update(loader.__dict__)
    return view

"""A compact (user, item, timestamp) log for the converters whose input is not grouped by user (App, MovieLens).

Tokens are coded to int32 on the fly and the events kept in ``array`` columns (16 bytes per event), so a log of
~100M events fits in a few GiB; grouping is one stable ``numpy.lexsort`` by (user, timestamp), which keeps the
input order for equal timestamps.
"""

from __future__ import annotations

from array import array
from typing import Callable, Iterator

import numpy as np


class EventLog:
    def __init__(self):
        self.user_code: dict[str, int] = {}
        self.users: list[str] = []
        self.item_code: dict[str, int] = {}
        self.items: list[str] = []
        self._u = array("i")
        self._i = array("i")
        self._t = array("d")

    def __len__(self) -> int:
        return len(self._u)

    def add(self, user: str, item: str, ts: float) -> None:
        u = self.user_code.get(user)
        if u is None:
            u = self.user_code[user] = len(self.users)
            self.users.append(user)
        i = self.item_code.get(item)
        if i is None:
            i = self.item_code[item] = len(self.items)
            self.items.append(item)
        self._u.append(u)
        self._i.append(i)
        self._t.append(ts)

    def timestamps_integral(self) -> bool:
        t = np.frombuffer(self._t, dtype=np.float64)
        return bool(len(t) == 0 or (np.all(t == np.floor(t)) and np.all(np.abs(t) < 2.0 ** 53)))

    def groups(self, user_order: Callable[[list[str]], list[int]] | None = None
               ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(user token, item codes, timestamps)`` per user, each chronological (ties: input order).

        Users come in first-appearance order, or in the order of the user codes returned by ``user_order``.
        """
        u = np.frombuffer(self._u, dtype=np.int32)
        it = np.frombuffer(self._i, dtype=np.int32)
        t = np.frombuffer(self._t, dtype=np.float64)
        if user_order is not None:
            rank = np.empty(len(self.users), dtype=np.int32)
            rank[np.asarray(user_order(self.users), dtype=np.int64)] = np.arange(len(self.users), dtype=np.int32)
            key = rank[u]
        else:
            key = u
        order = np.lexsort((t, key))  # stable: equal (user, timestamp) keep input order
        key_sorted = key[order]
        bounds = np.flatnonzero(np.diff(key_sorted)) + 1
        starts = np.concatenate(([0], bounds)) if len(order) else np.zeros(0, dtype=np.int64)
        ends = np.concatenate((bounds, [len(order)])) if len(order) else np.zeros(0, dtype=np.int64)
        del key_sorted
        for s, e in zip(starts.tolist(), ends.tolist()):
            idx = order[s:e]
            yield self.users[int(u[idx[0]])], it[idx], t[idx]

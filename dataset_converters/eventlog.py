"""A compact (user, item, timestamp) log for the converters whose input is not grouped by user (App, MovieLens).

Tokens are coded to int32 on the fly and the events kept in ``array`` columns (16 bytes per event; 24 with the
input line numbers, when given), so a log of ~100M events fits in a few GiB; grouping is one stable
``numpy.lexsort`` by (user, timestamp), which keeps the input order for equal timestamps. :meth:`duplicates` finds
exact duplicate events (same user, item and timestamp), which :meth:`groups` can leave out.
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
        self._line = array("q")

    def __len__(self) -> int:
        return len(self._u)

    def add(self, user: str, item: str, ts: float, line: int | None = None) -> None:
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
        if line is not None:
            self._line.append(line)

    def duplicates(self) -> tuple[np.ndarray, tuple[int, int] | None]:
        """(mask of the events that repeat an earlier one exactly, (line of the first, line of its first repeat) or
        None); lines need ``add(..., line=...)`` for every event."""
        u = np.frombuffer(self._u, dtype=np.int32)
        it = np.frombuffer(self._i, dtype=np.int32)
        t = np.frombuffer(self._t, dtype=np.float64)
        order = np.lexsort((np.arange(len(u)), t, it, u))  # equal events together, in input order
        same = (u[order][1:] == u[order][:-1]) & (it[order][1:] == it[order][:-1]) & (t[order][1:] == t[order][:-1])
        repeat = np.zeros(len(u), dtype=bool)
        repeat[order[1:][same]] = True
        if not same.any():
            return repeat, None
        second = int(np.flatnonzero(repeat)[0])
        k = int(np.flatnonzero(order == second)[0])
        while k > 0 and same[k - 1]:  # back to the first of its group
            k -= 1
        lines = np.frombuffer(self._line, dtype=np.int64) if len(self._line) == len(u) else None
        pair = (int(lines[order[k]]), int(lines[second])) if lines is not None else None
        return repeat, pair

    def timestamps_integral(self) -> bool:
        t = np.frombuffer(self._t, dtype=np.float64)
        return bool(len(t) == 0 or (np.all(t == np.floor(t)) and np.all(np.abs(t) < 2.0 ** 53)))

    def groups(self, user_order: Callable[[list[str]], list[int]] | None = None, skip: np.ndarray | None = None
               ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(user token, item codes, timestamps)`` per user, each chronological (ties: input order).

        Users come in first-appearance order, or in the order of the user codes returned by ``user_order``;
        ``skip``: a mask of events to leave out (e.g. :meth:`duplicates`).
        """
        u = np.frombuffer(self._u, dtype=np.int32)
        it = np.frombuffer(self._i, dtype=np.int32)
        t = np.frombuffer(self._t, dtype=np.float64)
        if skip is not None and skip.any():
            keep = ~skip
            u, it, t = u[keep], it[keep], t[keep]
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

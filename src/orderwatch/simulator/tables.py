"""The orders of one API, indexed as its database would hold them, and how a list query selects from them.

An ``OrderTable`` keeps the orders oldest first (with their creation times, for bisection), by key and by state;
its ``version`` counts changes, so answers built from it can be cached until the next one. The caller (the
``Simulator``) holds the lock and records history; the table only keeps its indexes true.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from orderwatch.simulator.queries import AceQuery, LskyQuery

Rows = list[dict[str, Any]]
T = TypeVar("T")


class Bucket:
    """Keys of one state, with O(1) add, remove and random choice."""

    __slots__ = ("items", "pos")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.pos: dict[str, int] = {}

    def add(self, key: str) -> None:
        """Add ``key`` (not already present)."""
        self.pos[key] = len(self.items)
        self.items.append(key)

    def remove(self, key: str) -> None:
        """Remove ``key`` by moving the last key into its place."""
        i, last = self.pos.pop(key), self.items.pop()
        if last != key:
            self.items[i], self.pos[last] = last, i


class OrderTable:
    """The orders of one API: ``orders`` oldest first, ``created`` their timestamps, ``by_key``, ``buckets``."""

    __slots__ = ("_cache", "buckets", "by_key", "created", "key_field", "orders", "state_field", "version")

    def __init__(self, key_field: str, state_field: str, states: Iterable[str]) -> None:
        self.key_field, self.state_field = key_field, state_field
        self.orders: Rows = []
        self.created: list[str] = []
        self.by_key: dict[str, dict[str, Any]] = {}
        self.buckets = {state: Bucket() for state in states}
        self.version = 0
        self._cache: dict[str, tuple[int, Any]] = {}

    def insert(self, order: dict[str, Any]) -> None:
        """Add a new order, the newest (its ``created_at`` is not before any other's)."""
        key = order[self.key_field]
        self.orders.append(order)
        self.created.append(order["created_at"])
        self.by_key[key] = order
        self.buckets[order[self.state_field]].add(key)
        self.version += 1

    def restate(self, order: dict[str, Any], before: str) -> None:
        """Move an order whose state field already changed from ``before`` into its new state's bucket."""
        key = order[self.key_field]
        self.buckets[before].remove(key)
        self.buckets[order[self.state_field]].add(key)
        self.version += 1

    def remove(self, order: dict[str, Any]) -> None:
        """Delete an order from every index."""
        i = bisect.bisect_left(self.created, order["created_at"])
        while self.orders[i] is not order:  # step over orders created in the same instant
            i += 1
        key = order[self.key_field]
        del self.orders[i], self.created[i], self.by_key[key]
        self.buckets[order[self.state_field]].remove(key)
        self.version += 1

    def newest(self) -> dict[str, Any] | None:
        """The most recently created order, or None."""
        return self.orders[-1] if self.orders else None

    def cached(self, name: str, build: Callable[[], T]) -> T:
        """``build()``, recomputed only after the table changed."""
        hit = self._cache.get(name)
        if hit is None or hit[0] != self.version:
            hit = self._cache[name] = (self.version, build())
        value: T = hit[1]
        return value


def select_ace(table: OrderTable, query: AceQuery) -> tuple[Rows, bool]:
    """The matching Ace orders in the requested order, once the flag (reverse them) is applied."""
    orders, created = table.orders, table.created
    lo = bisect.bisect_left(created, query.created_from) if query.created_from else 0
    to = bisect.bisect_right if query.to_inclusive else bisect.bisect_left
    hi = to(created, query.created_to) if query.created_to else len(orders)
    rows = orders if (lo, hi) == (0, len(orders)) else orders[lo:hi]
    if query.filters_rows:
        rows = [o for o in rows if query.matches(o)]
    if query.ordering:
        return rows, query.ordering == "-created_at"
    if rows is orders:  # the undocumented default order: by id, which means nothing to a client
        return table.cached("by-id", lambda: sorted(orders, key=lambda o: o["id"])), False
    return sorted(rows, key=lambda o: o["id"]), False


def select_lsky(table: OrderTable, query: LskyQuery) -> tuple[Rows, bool]:
    """The matching Lsky orders in the requested order, once the flag (reverse them) is applied.

    Without a sort they come in an order that shifts with every change (MySQL without ORDER BY)."""
    all_rows = table.orders
    rows = [o for o in all_rows if query.matches(o)] if query.filters_rows else all_rows
    if query.sort in {"latest", "oldest"}:
        return rows, query.sort == "latest"
    version = table.version  # no ORDER BY: the database's whim, reshuffled by every change

    def shuffled(rows: Rows) -> Rows:
        return sorted(rows, key=lambda o: zlib.crc32(f"{o['trade_no']}{version}".encode()))

    if rows is all_rows:
        return table.cached("unsorted", lambda: shuffled(rows)), False
    return shuffled(rows), False

"""Sorted views and keyset windows: the rows before or after a cursor's sort key, in either direction."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from orderwatch.simulator.shops.store import Row

SortKey = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Ordering:
    """A total order on rows: ``key`` must be unique per row (end it with the row's key or ``seq``)."""

    key: Callable[[Row], SortKey]
    descending: bool

    def apply(self, rows: Sequence[Row]) -> list[Row]:
        """``rows`` in this order."""
        return sorted(rows, key=self.key, reverse=self.descending)

    def after(self, rows: Sequence[Row], pivot: SortKey) -> list[Row]:
        """The rows that come strictly after ``pivot`` in this order, in this order."""
        asc, keys = self._ascending(rows)
        if self.descending:
            return asc[: bisect.bisect_left(keys, pivot)][::-1]
        return asc[bisect.bisect_right(keys, pivot) :]

    def before(self, rows: Sequence[Row], pivot: SortKey) -> list[Row]:
        """The rows that come strictly before ``pivot`` in this order, in this order."""
        asc, keys = self._ascending(rows)
        if self.descending:
            return asc[bisect.bisect_right(keys, pivot) :][::-1]
        return asc[: bisect.bisect_left(keys, pivot)]

    def _ascending(self, rows: Sequence[Row]) -> tuple[list[Row], list[SortKey]]:
        asc = sorted(rows, key=self.key)
        return asc, [self.key(row) for row in asc]

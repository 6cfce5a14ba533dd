"""The orders of one simulated API: rows in creation order, and a bucket per state for O(1) random picks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True, eq=False)
class Row:
    """One order: its key, creation rank, raw state and times, the body the API returns, and dialect extras.

    ``created``/``updated`` are timezone-aware and already cut to the API's resolution, so sorting and filtering on
    them agrees with what the body shows. ``extra`` holds what a dialect needs but does not show (a status to
    restore from the trash, say)."""

    key: str
    seq: int
    state: str
    created: datetime
    updated: datetime
    body: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


class _Bucket:
    """Keys of one state, with O(1) add, remove and random choice."""

    __slots__ = ("items", "pos")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.pos: dict[str, int] = {}

    def add(self, key: str) -> None:
        self.pos[key] = len(self.items)
        self.items.append(key)

    def remove(self, key: str) -> None:
        i, last = self.pos.pop(key), self.items.pop()
        if last != key:
            self.items[i], self.pos[last] = last, i


class OrderStore:
    """Rows by key in creation order; ``version`` grows with every change (callers hold the simulator's lock)."""

    def __init__(self, states: Iterable[str]) -> None:
        self._rows: dict[str, Row] = {}
        self._buckets = {state: _Bucket() for state in states}
        self._seq = 0
        self.version = 0

    def next_seq(self) -> int:
        """The creation rank for the next row (1, 2, ...)."""
        self._seq += 1
        return self._seq

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def get(self, key: str) -> Row | None:
        """The row of ``key``, or None."""
        return self._rows.get(key)

    def rows(self) -> list[Row]:
        """Every row, oldest first."""
        return list(self._rows.values())

    def keys_in(self, state: str) -> list[str]:
        """The keys in ``state`` (in no useful order; for random picks). The list is live: do not change it."""
        return self._buckets[state].items

    def add(self, row: Row) -> None:
        """Store a new row."""
        if row.key in self._rows:
            raise KeyError(f"duplicate order key {row.key!r}")
        self._rows[row.key] = row
        self._buckets[row.state].add(row.key)
        self.version += 1

    def move(self, row: Row, state: str) -> None:
        """Put ``row`` in ``state``."""
        self._buckets[row.state].remove(row.key)
        self._buckets[state].add(row.key)
        row.state = state
        self.version += 1

    def touch(self) -> None:
        """Note a change that is not a state change (a field edit)."""
        self.version += 1

    def remove(self, row: Row) -> None:
        """Forget ``row``."""
        del self._rows[row.key]
        self._buckets[row.state].remove(row.key)
        self.version += 1

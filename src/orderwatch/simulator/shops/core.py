"""What every simulated shop API shares: seeded randomness, the clock, the orders and the history of changes."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from orderwatch.simulator.shops.store import OrderStore, Row
from orderwatch.simulator.shops.timefmt import whole_seconds
from orderwatch.simulator.state import SimChange

ChangeKind = Literal["created", "state", "deleted"]

EPOCH: Final = datetime(2024, 6, 15, 10, 0, 0, tzinfo=UTC)  # where the fake clock starts
_CLOCK_STEPS: Final = (0.0, 0.2, 0.4, 0.7, 1.3, 2.0, 5.0, 30.0, 120.0)  # seconds between two creations


class ShopCore:
    """The orders of one API and their history; the caller holds the simulator's lock.

    ``rng`` drives orders and ``step()``; ``aux`` drives request ids and fault sizes, so serving requests never
    changes which orders a seed makes. Times come from ``clock`` (timezone-aware) or a fake clock that starts at
    2024-06-15T10:00:00Z and advances a little per creation and one second per change; creation times never
    decrease and an order's update time never goes back, whatever the clock does."""

    def __init__(
        self,
        api: str,
        states: Iterable[str],
        *,
        seed: int,
        clock: Callable[[], datetime] | None,
        whole: bool,
    ) -> None:
        self.api = api
        self.rng = random.Random(seed)
        self.aux = random.Random(seed ^ 0xA0C)
        self.store = OrderStore(states)
        self.history: list[SimChange] = []
        self._clock = clock
        self._whole = whole
        self._fake_now = EPOCH
        self._newest: datetime | None = None

    def now(self) -> datetime:
        """The current time, cut to the API's resolution."""
        now = self._clock() if self._clock is not None else self._fake_now
        return whole_seconds(now) if self._whole else now

    def creation_time(self) -> datetime:
        """The time for a new order: now, but never before the newest order's."""
        self._fake_now += timedelta(seconds=self.rng.choice(_CLOCK_STEPS) + self.rng.random() / 1000)
        now = self.now()
        if self._newest is not None and now < self._newest:
            now = self._newest
        self._newest = now
        return now

    def change_time(self, row: Row) -> datetime:
        """The time for a change to ``row``: now, but never before its last update."""
        self._fake_now += timedelta(seconds=1)
        return max(self.now(), row.updated)

    def insert(self, row: Row) -> None:
        """Store a new order and record its creation."""
        self.store.add(row)
        self._record(row.key, "created", None, row.state)

    def move(self, row: Row, state: str) -> str:
        """Put ``row`` in ``state``, record it, and return the state it left."""
        before = row.state
        self.store.move(row, state)
        self._record(row.key, "state", before, state)
        return before

    def remove(self, row: Row) -> None:
        """Delete an order and record it."""
        self.store.remove(row)
        self._record(row.key, "deleted", row.state, None)

    def _record(self, key: str, kind: ChangeKind, before: str | None, after: str | None) -> None:
        self.history.append(SimChange(self.api, key, kind, before, after, len(self.history) + 1))

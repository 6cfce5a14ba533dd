"""A server and a snapshot in memory that answer a plan's questions as a real server and the store would.

The server keeps orders as ``{key: (raw state, creation time)}`` and answers list pages newest first, with counts,
filters by one state and by part (Ace-like creation-time ranges or Lsky-like trade-number searches), and a detail
endpoint; switches make it behave like the servers that differ (a state filter it ignores, counts that lie, a
detail endpoint that is missing or answers another order, a search that matches substrings, a one-order page
that ignores its offset, orders that change while a list is paged). Pure: no HTTP.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from orderwatch import clock
from orderwatch.core.model import Order, Page
from orderwatch.sources import Part, Partition, acedata, lsky
from orderwatch.sweep.plan import (
    Answer,
    Ask,
    Detail,
    Knowledge,
    List,
    LocalCount,
    LocalRows,
    LocalValues,
    Plan,
    Row,
    Verdict,
)

OPEN = ("Pending", "Paid")
SETTLED = ("Finished", "Expired", "Failed", "Refunded")
T0 = datetime(2024, 6, 15, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    """The creation time ``seconds`` after T0."""
    return clock.text(T0 + timedelta(seconds=seconds))


def trade_no(created: str, n: int) -> str:
    """A Lsky-like trade number: the creation time's digits and five more."""
    when = clock.parse(created)
    return f"{when:%Y%m%d%H%M%S}{n % 100000:05d}_002"


@dataclass
class World:
    """The server's orders, the snapshot's rows, and how the server behaves."""

    by: Literal["created", "key"] = "created"
    page_size: int = 20
    server: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (raw state, created)
    stored: dict[str, Row] = field(default_factory=dict)
    ignores_state: bool = False
    counts: Literal["true", "low", "none"] = "true"
    detail: Literal["ok", "none", "ignores_id"] = "ok"
    search: Literal["prefix", "substring"] = "substring"
    unsorted: bool = False
    offsets: Literal["true", "ignored"] = "true"  # "ignored": a one-order page is the first, whatever its offset
    remote: int = 0
    asked: list[Ask] = field(default_factory=list)  # the remote questions, in order
    caps: dict[str, bool | None] = field(default_factory=dict)
    open_states: tuple[str, ...] = OPEN
    settled_states: tuple[str, ...] = SETTLED
    before_list: Callable[[World, List], None] | None = None  # changes the server just before a page is answered

    # -- building ------------------------------------------------------------------------------------------------

    def add(self, key: str, state: str, created: str, *, stored: bool = True) -> None:
        """An order on the server (and, unless ``stored=False``, in the snapshot as it is)."""
        self.server[key] = (state, created)
        if stored:
            self.stored[key] = Row(state, self.value(key, created), created)

    def value(self, key: str, created: str) -> str:
        """The partition value of an order."""
        return key if self.by == "key" else created

    @property
    def partition(self) -> Partition:
        """The adapter's partition for this world's kind."""
        return lsky.PARTITION if self.by == "key" else acedata.PARTITION

    def knowledge(self) -> Knowledge:
        """What the poller would hand the plan."""
        counts: dict[str, int] = {}
        for row in self.stored.values():
            counts[row.raw_state] = counts.get(row.raw_state, 0) + 1
        return Knowledge(
            page_size=self.page_size,
            max_pages=10_000,
            first_cursor=0,
            next_cursor=lambda c, p: c + p.size if p.size else None,
            says_last=lambda c, p: p.total is not None and c + p.size >= p.total,
            plan_cursors=lambda p, c, n: list(range(c + p.size, p.total or 0, p.size))[:n] if p.size else [],
            open_states=self.open_states,
            settled_states=self.settled_states,
            stored_counts=counts,
            open_rows={k: r for k, r in self.stored.items() if r.raw_state in self.open_states},
            recent=self.recent(),
            newest=max((r.created for r in self.stored.values() if r.created), default=None),
            partition=self.partition,
            caps=dict(self.caps),  # type: ignore[arg-type]
            full_pages=math.ceil(len(self.stored) / self.page_size) + 1,
            jump=lambda offset: offset,
        )

    def recent(self) -> dict[str, int]:
        """Stored settled orders created since the oldest stored open order, by state."""
        opened = [r.created for r in self.stored.values() if r.raw_state in self.open_states and r.created]
        floor = min(opened, default=None)
        found: dict[str, int] = {}
        for row in self.stored.values():
            if floor is not None and row.raw_state not in self.open_states and (row.created or "") >= floor:
                found[row.raw_state] = found.get(row.raw_state, 0) + 1
        return found

    # -- answering -----------------------------------------------------------------------------------------------

    def order(self, key: str) -> Order:
        """An order as the server would return it."""
        state, created = self.server[key]
        raw = {"id": key, "state": state, "created_at": created}
        return Order.build(key, state, state, raw, created=created)

    def matches(self, key: str, state: str | None, part: Part | None) -> bool:
        """Whether the server lists ``key`` for this filter."""
        raw, created = self.server[key]
        if state is not None and not self.ignores_state and raw != state:
            return False
        if part is None:
            return True
        if self.by == "created":
            return part.contains(created)
        word = part.lo or ""
        return key.startswith(word) if self.search == "prefix" else word in key

    def listed(self, state: str | None, part: Part | None) -> list[str]:
        """The keys the server lists, newest first."""
        keys = [k for k in self.server if self.matches(k, state, part)]
        keys.sort(key=lambda k: (self.server[k][1], k), reverse=not self.unsorted)
        return keys

    def answer(self, ask: Ask) -> Answer:
        """What the server or the store answers."""
        if isinstance(ask, List):
            self.remote += 1
            self.asked.append(ask)
            if self.before_list is not None:
                self.before_list(self, ask)
            keys = self.listed(ask.state, ask.part)
            start = 0 if ask.size == 1 and self.offsets == "ignored" else ask.cursor
            page = keys[start : start + min(ask.size, self.page_size)]
            orders = tuple(self.order(k) for k in page)
            total = {"true": len(keys), "low": len(keys) // 3, "none": None}[self.counts]
            times = [self.server[k][1] for k in page]
            ordered = all(a >= b for a, b in itertools.pairwise(times)) if times else None
            return Page(
                orders=orders,
                total=total,
                newest_first=ordered,
                newest=times[0] if times else None,
                oldest=times[-1] if times else None,
            )
        if isinstance(ask, Detail):
            self.remote += 1
            self.asked.append(ask)
            if self.detail == "none":
                return None
            if self.detail == "ignores_id":
                return self.order(next(iter(self.server)))
            return self.order(ask.key) if ask.key in self.server else None
        if isinstance(ask, LocalCount):
            if ask.substring:
                word = ask.part.lo or ""
                return sum(1 for k, r in self.stored.items() if word in k and ask.state in (None, r.raw_state))
            return sum(1 for r in self.stored.values() if _in(r, ask.state, ask.part))
        if isinstance(ask, LocalRows):
            if ask.keys:
                return {k: self.stored[k] for k in ask.keys if k in self.stored}
            part = ask.part or Part()
            return {k: r for k, r in self.stored.items() if _in(r, ask.state, part)}
        if isinstance(ask, LocalValues):
            values = [r.value for r in self.stored.values() if _in(r, ask.state, ask.part) and r.value is not None]
            return sorted(values)
        raise AssertionError(f"unknown ask {ask!r}")

    def run(self, plan: Plan) -> Verdict:
        """Drive ``plan`` to its verdict."""
        try:
            batch = next(plan)
            while True:
                batch = plan.send([self.answer(a) for a in batch])
        except StopIteration as stop:
            verdict: Verdict = stop.value
            return verdict

    # -- checking ------------------------------------------------------------------------------------------------

    def truth(self) -> dict[str, str]:
        """Every order's raw state on the server."""
        return {k: s for k, (s, _) in self.server.items()}

    def applied(self, verdict: Verdict) -> dict[str, str]:
        """The snapshot's states with the verdict's sightings applied."""
        states = {k: r.raw_state for k, r in self.stored.items()}
        for key, order in verdict.seen.items():
            states[key] = order.raw_state
        for key in verdict.gone:
            states.pop(key, None)
        return states


def _in(row: Row, state: str | None, part: Part) -> bool:
    return (state is None or row.raw_state == state) and part.contains(row.value)


def spread(n: int, *, step: float = 7.0) -> list[str]:
    """``n`` increasing creation times ``step`` seconds apart (with microseconds, as Ace writes them)."""
    return [at(i * step + (i % 7) * 0.000013) for i in range(n)]


def index_of(values: Sequence[str], value: str) -> int:
    """Where ``value`` sits among sorted ``values``."""
    return bisect.bisect_left(values, value)


def states_of(orders: Mapping[str, Order]) -> dict[str, str]:
    """Raw states of orders by key."""
    return {k: o.raw_state for k, o in orders.items()}

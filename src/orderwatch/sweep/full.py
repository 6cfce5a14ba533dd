"""Where a full sweep's pages go: each is diffed against the store as it arrives, so memory follows the churn, not
the size of the list.

Two paths. The fast one runs in the event loop, in memory: a ``FingerprintIndex`` of the stored orders, read once
at the start, says which orders of a page are unchanged (nearly all of them) and marks them seen. It is asked while
each page is parsed (``skip``), so an unchanged order is never built, and again in ``take`` for orders handed over
built. The exact one settles the rest — new orders, changed ones, anything the index cannot vouch for — against
the store in a worker thread, a batch at a time, in list order: a keyed look-up, ``diff``, the seen-keys table for
orders the index does not hold.

Rows whose canonical state changed are held, with their events, for the poll's single final transaction. Rows
without an event (content changes, baseline rows) are written in batches as the sweep goes: nothing depends on
them, so a crash in between loses no event. Held rows overlay the store, so a row seen twice (pushed down a page by
a new order) makes one event.

Call order: ``begin`` (thread), pages (``await sink(orders)``), ``await sink.distinct()``, ``unseen`` (thread, when
the sweep proves absence), ``end`` (thread, always), ``finish`` (thread).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anyio.to_thread

from orderwatch.core.diff import diff
from orderwatch.core.model import Change, Event, Known, Observation, Order, is_canonical

if TYPE_CHECKING:
    from orderwatch.core.fingerprints import FingerprintIndex
    from orderwatch.sources import Skip
    from orderwatch.store import Store


class SnapshotSink:
    """Takes a full sweep's pages in list order and diffs them against the store."""

    FLUSH = 1000  # silent rows per write
    SETTLE = 500  # misses per exact settling (one worker-thread hop)

    def __init__(
        self,
        store: Store,
        source: str,
        *,
        baselined: bool,
        now: str,
        write: bool = True,
    ) -> None:
        self.store = store
        self.source = source
        self.baselined = baselined
        self.now = now
        self.write = write
        self.index: FingerprintIndex | None = None  # None: no index (not begun, or ambiguous): everything is exact
        self._lent: FingerprintIndex | None = None  # the store's index, to give back at the end
        self.events: list[Event] = []
        self.held: dict[str, Order] = {}
        self.silent: list[Order] = []
        self.pending: list[Order] = []  # misses waiting to be settled, in list order
        self.fresh: set[str] = set()  # keys the index does not hold that the sweep saw (tracked in the store)
        self.unchanged = 0  # orders the exact path found unchanged (the index counts its own)
        self.others = 0  # distinct orders seen that the index does not hold (all of them, without an index)
        self.seen_states: set[tuple[str, str]] = set()  # (raw, canonical) states seen, for the unknown-state warning

    def begin(self) -> None:
        """Start the sweep: the store's seen-keys table, and the index of what it holds (blocking)."""
        self.store.seen_begin(self.source)
        # a stored state that is not canonical was kept as the API spelled it: raw and canonical are the same
        stored = self.store.stored_states(self.source)
        self.seen_states.update((state, state) for state in stored if not is_canonical(state))
        index = self._lent = self.store.fingerprint_index(self.source)  # last: nothing can fail once it is lent
        self.index = None if index.ambiguous else index

    @property
    def skip(self) -> Skip | None:
        """The index's test, for the parser to leave unchanged orders out (None without an index)."""
        return self.index.unchanged if self.index is not None else None

    def take(self, orders: Sequence[Order]) -> bool:
        """The fast path for one page's orders (memory only); returns True when enough misses wait for ``settle``."""
        index = self.index
        missed = orders if index is None else [o for o in orders if not index.unchanged(o.key, o.state, o.raw_json)]
        # an unchanged order's state is a stored state, which begin() already noted
        self.seen_states.update((o.raw_state, o.state) for o in missed)
        self.pending.extend(o.compact() for o in missed)
        return len(self.pending) >= self.SETTLE

    @property
    def seen(self) -> int:
        """How many distinct orders the sweep has seen so far (settled or found unchanged)."""
        return self.others + (self.index.marked if self.index is not None else 0)

    async def __call__(self, orders: Sequence[Order]) -> None:
        if self.take(orders):
            await anyio.to_thread.run_sync(self.settle)

    async def distinct(self) -> int:
        """How many distinct orders the sweep has seen (settling what waits first)."""
        if self.pending:
            await anyio.to_thread.run_sync(self.settle)
        return self.seen

    def settle(self) -> None:
        """The exact path for the misses taken so far, in list order (blocking)."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        keys = list(dict.fromkeys(o.key for o in pending))
        previous = self.store.known(self.source, keys)
        index = self.index
        others: list[str] = []
        for key in keys:
            marked = index.mark(key) if index is not None and key in previous and key not in self.fresh else None
            if marked is None:  # not held by the index: the store's seen-keys table dedupes it
                others.append(key)
                if index is not None and index.size:
                    self.fresh.add(key)
        if others:
            self.others += self.store.seen_add(self.source, others)
        run: dict[str, Order] = {}
        for order in pending:  # in runs without a repeated key, so that a row met twice makes one event
            if order.key in run:
                self._diff(run, previous)
                run = {}
            run[order.key] = order
        self._diff(run, previous)
        if len(self.silent) >= self.FLUSH:
            self._flush()

    def _diff(self, run: dict[str, Order], stored: Mapping[str, Known]) -> None:
        """Diff orders with distinct keys against the store, overlaid with the rows held so far."""
        previous: dict[str, Known] = {}
        for key in run:
            held = self.held.get(key)
            old = Known(held.raw_state, held.state, held.digest) if held is not None else stored.get(key)
            if old is not None:
                previous[key] = old
        page = Observation(self.source, run, complete=False, consistent=False)
        change = diff(previous, page, baselined=self.baselined, now=self.now)
        self.events.extend(change.events)
        self.unchanged += change.unchanged
        with_event = {e.order_id for e in change.events}
        for order in change.upserts:
            if order.key in with_event or order.key in self.held:
                self.held[order.key] = order
            else:
                self.silent.append(order)

    def _flush(self) -> None:
        if self.write and self.silent:
            self.store.write_rows(self.source, self.silent, now=self.now)
        self.silent = []

    def unseen(self) -> dict[str, Known]:
        """The stored orders the sweep did not see (blocking)."""
        self.settle()
        index = self.index
        if index is not None and index.all_seen:
            return {}  # every order stored at the start was seen; rows stored since were seen by definition
        return self.store.unseen(self.source, seen=index.seen if index is not None else None)

    def end(self) -> None:
        """Give the index back to the store and forget the sweep's seen keys (blocking; always call it)."""
        if self._lent is not None:
            self.store.fingerprints_done(self.source, self._lent)
        if self.index is not None:
            self.unchanged += self.index.hits
        self.index = self._lent = None
        self.fresh = set()
        self.store.seen_end(self.source)

    def finish(self, missing: Mapping[str, Known], *, proves_absence: bool) -> Change:
        """The change for the final transaction: held rows, their events, and the orders gone (``missing``)."""
        self.settle()
        self._flush()
        gone = diff(
            missing,
            Observation(self.source, {}, complete=True, consistent=True),
            baselined=self.baselined,
            now=self.now,
        )
        return Change(
            events=(*self.events, *gone.events),
            upserts=tuple(self.held.values()),
            removals=gone.removals,
            baseline=not self.baselined and proves_absence,
            unchanged=self.unchanged,
        )

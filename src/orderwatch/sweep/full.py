"""A full sweep of one source as one context: every page goes in, in list order, and is diffed against the store as
it arrives, so memory follows the churn, not the size of the list.

    async with FullSweep(store, source, baselined=..., now=...) as sweep:
        observation = await paging.stream(client, src, sweep)  # pages in: ``await sweep(orders)``
        missing = await sweep.unseen()  # when the sweep proves absence
        change = await sweep.result(missing, proves_absence=...)

Entering starts the sweep in the store; leaving ends it, however the block ends (an error, a cancelled poll): the
store forgets the sweep's seen keys and gets its fingerprint index back. Nothing is inferred from a sweep that did
not reach ``result``, so an abandoned sweep reports nothing vanished.

One worker thread, the sweep's own, makes every store call and every ``mark`` of the sweep, in the order they were
asked; the event loop never waits for SQLite while a page is parsed. Two paths:

- The fast one runs in the event loop, in memory: the ``FingerprintIndex`` of the stored orders, read when the
  sweep starts, says which orders of a page are unchanged (nearly all of them). It is asked while each page is
  parsed (``skip``), so an unchanged order is never built. The event loop only *reads* the index; the slots it
  found go to the owner thread with the next batch, which marks them seen.
- The exact one settles the rest on the owner thread, a batch at a time, in list order: orders the parser handed
  over built (asked of the index again), then new orders, changed ones, anything the index cannot vouch for,
  against the store (a keyed look-up, ``diff``, the seen-keys table for orders the index does not hold).

A baseline (the first sweep, of a source with no rows) takes neither path: there is nothing to compare with and no
event to make, so its pages go to the owner thread as they are, which appends them to the store in bulk as rows
(``Store.append_rows``) and has the store key them, and count the distinct orders, once all pages are in.

Rows whose canonical state changed are held, with their events, for the poll's single final transaction. Rows
without an event (content changes, baseline rows) are written in batches as the sweep goes: nothing depends on
them, so a crash in between loses no event. Held rows overlay the store, so a row seen twice (pushed down a page by
a new order) makes one event.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.lowlevel import EventLoopToken

from orderwatch.core.diff import diff
from orderwatch.core.fingerprints import TAG_BITS, hash64, state_seed
from orderwatch.core.model import Change, Event, Known, Observation, Order, is_canonical
from orderwatch.errors import StoreError

if TYPE_CHECKING:
    from orderwatch.core.fingerprints import FingerprintIndex
    from orderwatch.sources import Skip
    from orderwatch.store import Store
    from orderwatch.store.sweep import BulkRow

T = TypeVar("T")


class _Job(Generic[T]):
    """One call made on the owner thread; the event loop may wait for its result."""

    __slots__ = ("_done", "_error", "_fn", "_lock", "_result", "_token", "_waiter")

    def __init__(self, fn: Callable[[], T], token: EventLoopToken) -> None:
        self._fn = fn
        self._token = token
        self._lock = threading.Lock()
        self._done = False
        self._waiter: anyio.Event | None = None
        self._result: T | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        """Make the call (owner thread), then wake the event loop if it waits for it."""
        try:
            self._result = self._fn()
        except BaseException as exc:  # handed to whoever waits for the job
            self._error = exc
        with self._lock:
            self._done = True
            waiter = self._waiter
        if waiter is not None:  # only then: a job nobody waits for yet costs the event loop nothing
            anyio.from_thread.run_sync(waiter.set, token=self._token)

    @property
    def done(self) -> bool:
        with self._lock:
            return self._done

    async def wait(self) -> T:
        """The call's result (its error raised here)."""
        with self._lock:
            waiter = None if self._done else anyio.Event()
            self._waiter = waiter
        if waiter is not None:
            await waiter.wait()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]  # set by run() when it did not raise


class _Owner:
    """The sweep's worker thread: runs the jobs given to it one at a time, in order, until it is stopped."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._token: EventLoopToken | None = None

    def start(self) -> None:
        self._token = anyio.lowlevel.current_token()
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()

    def submit(self, fn: Callable[[], T]) -> _Job[T]:
        assert self._token is not None, "start() first"
        job = _Job(fn, self._token)
        self._jobs.put(job)
        return job

    def stop(self) -> None:
        """Let the thread end once it has run every job given so far (all of them awaited: it ends at once)."""
        self._jobs.put(None)
        self._thread.join()


class FullSweep:
    """One full sweep of ``source``: an async context taking the sweep's pages in list order (a ``PageSink``)."""

    FLUSH = 1000  # silent rows per write
    SETTLE = 500  # orders per batch settled on the owner thread
    AHEAD = 2  # batches handed to the owner thread and not yet settled, before a page waits for one
    MARKS = 10_000  # unchanged orders found by the parser, handed over to be marked even without a batch
    BULK = 5000  # rows per transaction of a baseline appended in bulk
    BULK_AHEAD = 16  # pages of a baseline handed over and not yet taken

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
        self.seen_states: set[tuple[str, str]] = set()  # (raw, canonical) states seen, for the unknown-state warning
        self._owner = _Owner(f"orderwatch-sweep-{source}")
        self._inflight: list[_Job[None]] = []
        # event loop only
        self._batch: list[Order] = []
        self._hits: list[int] = []  # slots the parser found unchanged, for the owner thread to mark
        self._probe: Skip | None = None
        self._bulk = False  # a baseline into a source with no rows: its pages are appended as they come
        # owner thread only
        self._index: FingerprintIndex | None = None  # None: no index (ambiguous): everything is exact
        self._lent: FingerprintIndex | None = None  # the store's index, to give back at the end
        self._events: list[Event] = []
        self._held: dict[str, Order] = {}
        self._silent: list[Order] = []
        self._fresh: set[str] = set()  # keys the index does not hold that the sweep saw (tracked in the store)
        self._unchanged = 0  # orders the exact path found unchanged
        self._others = 0  # distinct orders seen that the index does not hold (all of them, without an index)
        self._rows: list[BulkRow] = []  # a baseline's rows waiting to be appended
        self._seeds: dict[str, int] = {}  # canonical state -> its fingerprints' seed

    # ---- the context

    async def __aenter__(self) -> FullSweep:
        self._owner.start()
        try:
            with anyio.CancelScope(shield=True):  # once begun, the sweep must be ended
                await self._owner.submit(self._begin).wait()
        except BaseException:
            self._owner.stop()
            raise
        index = self._index
        if index is not None and index.size:
            self._probe = self._make_probe(index)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            with anyio.CancelScope(shield=True):  # a cancelled poll still ends its sweep
                ending = self._owner.submit(self._end)
                try:
                    await ending.wait()
                except StoreError:
                    if exc is None:
                        raise
                    # the block's own error says what went wrong; the store ends the sweep when it can
        finally:
            self._owner.stop()

    # ---- the event loop's side

    @property
    def skip(self) -> Skip | None:
        """The index's read-only test for the parser, to leave unchanged orders out (None without an index)."""
        return self._probe

    def _make_probe(self, index: FingerprintIndex) -> Skip:
        find, hits = index.find, self._hits

        def probe(key: str, state: str, blob: bytes) -> bool:
            slot = find(key, state, blob)
            if slot < 0:
                return False
            hits.append(slot)
            return True

        return probe

    async def __call__(self, orders: Sequence[Order]) -> None:
        """Take one page's orders (those the parser built), in list order."""
        if self._bulk:
            # a baseline's page goes to the owner thread as it is: its orders' JSON is still in the parser's
            # buffers, which the owner thread frees as it turns them into rows, so only BULK_AHEAD pages may wait
            await self._room(self.BULK_AHEAD)
            self._inflight.append(self._owner.submit(lambda: self._take_rows(orders)))
            return
        self._batch.extend(o.compact() for o in orders)
        if len(self._batch) >= self.SETTLE or len(self._hits) >= self.MARKS:
            await self._hand_over()

    async def _room(self, limit: int) -> None:
        """Raise the error of a job the owner thread has done, and wait while ``limit`` jobs are not done."""
        for job in [j for j in self._inflight if j.done]:
            self._inflight.remove(job)
            await job.wait()  # its error, if any
        while len(self._inflight) >= limit:
            await self._inflight.pop(0).wait()

    async def _hand_over(self) -> None:
        """Give what waits to the owner thread, waiting first while it has ``AHEAD`` batches to settle."""
        await self._room(self.AHEAD)
        batch, self._batch = self._batch, []
        hits, self._hits[:] = list(self._hits), []
        self._inflight.append(self._owner.submit(lambda: self._settle(batch, hits)))

    async def _settled(self) -> None:
        """Wait until everything taken so far is settled."""
        if self._batch or self._hits:
            await self._hand_over()
        while self._inflight:
            await self._inflight.pop(0).wait()

    async def distinct(self) -> int:
        """How many distinct orders the sweep has seen."""
        await self._settled()
        return await self._owner.submit(self._seen).wait()

    async def unseen(self) -> dict[str, Known]:
        """The stored orders the sweep did not see."""
        await self._settled()
        return await self._owner.submit(self._unseen).wait()

    async def stored_keys(self, *, exclude: Sequence[str] = (), limit: int = 1) -> list[str]:
        """Up to ``limit`` stored keys of the source not in ``exclude``."""
        return await self._owner.submit(lambda: self.store.any_keys(self.source, exclude=exclude, limit=limit)).wait()

    async def result(self, missing: Mapping[str, Known], *, proves_absence: bool) -> Change:
        """The change for the poll's final transaction: held rows, their events, and the orders gone (``missing``)."""
        await self._settled()
        return await self._owner.submit(lambda: self._finish(missing, proves_absence=proves_absence)).wait()

    # ---- the owner thread's side

    def _begin(self) -> None:
        """Start the sweep: the store's seen-keys table, and the index of what it holds."""
        # a baseline appends its rows as they come (a dry run writes nothing, and a source that once had its
        # baseline makes events: those are settled exactly)
        self._bulk = self.store.seen_begin(self.source, bulk=self.write and not self.baselined)
        try:
            # a stored state that is not canonical was kept as the API spelled it: raw and canonical are the same
            stored = self.store.stored_states(self.source)
            self.seen_states.update((state, state) for state in stored if not is_canonical(state))
            index = self._lent = self.store.fingerprint_index(self.source)  # last: nothing can fail once it is lent
        except BaseException:
            self.store.seen_end(self.source)
            raise
        self._index = None if index.ambiguous else index

    def _seen(self) -> int:
        if self._bulk:  # all pages are in: the store keys the rows and counts the distinct orders
            self._append()
            self._bulk = False
            self._others = self.store.key_bulk(self.source)
        return self._others + (self._index.marked if self._index is not None else 0)

    def _settle(self, orders: list[Order], hits: list[int]) -> None:
        """The exact path for a batch, in list order, after marking the slots the parser found unchanged."""
        index = self._index
        if index is not None:
            index.mark_slots(hits)
            missed = [o for o in orders if not index.unchanged(o.key, o.state, o.raw_json)]
        else:
            missed = orders
        # an unchanged order's state is a stored state, which _begin noted
        self.seen_states.update((o.raw_state, o.state) for o in missed)
        if not missed:
            return
        keys = list(dict.fromkeys(o.key for o in missed))
        previous = self.store.known(self.source, keys)
        others: list[str] = []
        for key in keys:
            marked = index.mark(key) if index is not None and key in previous and key not in self._fresh else None
            if marked is None:  # not held by the index: the store's seen-keys table dedupes it
                others.append(key)
                if index is not None and index.size:
                    self._fresh.add(key)
        if others:
            self._others += self.store.seen_add(self.source, others)
        run: dict[str, Order] = {}
        for order in missed:  # in runs without a repeated key, so that a row met twice makes one event
            if order.key in run:
                self._diff(run, previous)
                run = {}
            run[order.key] = order
        self._diff(run, previous)
        if len(self._silent) >= self.FLUSH:
            self._flush()

    def _take_rows(self, orders: Sequence[Order]) -> None:
        """A baseline's page: its orders as rows, appended once there are ``BULK`` of them. No order is stored
        yet, and a baseline makes no event, so there is nothing to look up or diff; an order met twice is appended
        twice, and the store keeps its last sighting when it keys the rows."""
        # every order of a baseline goes through this loop while the event loop parses the next pages and wants
        # the GIL back: tag_of and fingerprint are inlined, with the state seeds cached
        rows = self._rows
        seeds = self._seeds
        states = self.seen_states
        source, now = self.source, self.now
        h64 = hash64
        for o in orders:
            state = o.state
            seed = seeds.get(state)
            if seed is None:
                seed = seeds[state] = state_seed(state)
            states.add((o.raw_state, state))
            key = o.key
            blob = o.raw_json
            tag = (h64(key.encode()) & TAG_BITS) or 1
            rows.append(
                (
                    source,
                    key,
                    o.raw_state,
                    state,
                    o.digest,
                    tag,
                    h64(blob, seed) & TAG_BITS,
                    o.created,
                    now,
                    now,
                    blob.decode(),
                )
            )
        if len(rows) >= self.BULK:
            self._append()

    def _append(self) -> None:
        if self._rows:
            self.store.append_rows(self.source, self._rows)
        self._rows = []

    def _diff(self, run: dict[str, Order], stored: Mapping[str, Known]) -> None:
        """Diff orders with distinct keys against the store, overlaid with the rows held so far."""
        previous: dict[str, Known] = {}
        for key in run:
            held = self._held.get(key)
            old = Known(held.raw_state, held.state, held.digest) if held is not None else stored.get(key)
            if old is not None:
                previous[key] = old
        page = Observation(self.source, run, complete=False, consistent=False)
        change = diff(previous, page, baselined=self.baselined, now=self.now)
        self._events.extend(change.events)
        self._unchanged += change.unchanged
        with_event = {e.order_id for e in change.events}
        for order in change.upserts:
            if order.key in with_event or order.key in self._held:
                self._held[order.key] = order
            else:
                self._silent.append(order)

    def _flush(self) -> None:
        if self.write and self._silent:
            self.store.write_rows(self.source, self._silent, now=self.now)
        self._silent = []

    def _unseen(self) -> dict[str, Known]:
        index = self._index
        if index is not None and index.all_seen:
            return {}  # every order stored at the start was seen; rows stored since were seen by definition
        return self.store.unseen(self.source, seen=index.seen if index is not None else None)

    def _finish(self, missing: Mapping[str, Known], *, proves_absence: bool) -> Change:
        self._seen()  # a baseline in bulk ends here at the latest
        self._flush()
        gone = diff(
            missing,
            Observation(self.source, {}, complete=True, consistent=True),
            baselined=self.baselined,
            now=self.now,
        )
        hits = self._index.hits if self._index is not None else 0
        return Change(
            events=(*self._events, *gone.events),
            upserts=tuple(self._held.values()),
            removals=gone.removals,
            baseline=not self.baselined and proves_absence,
            unchanged=self._unchanged + hits,
        )

    def _end(self) -> None:
        """Give the index back to the store and forget the sweep's seen keys."""
        try:
            if self._lent is not None:
                self.store.fingerprints_done(self.source, self._lent)
        finally:
            self._index = self._lent = None
            self._fresh = set()
            self.store.seen_end(self.source)

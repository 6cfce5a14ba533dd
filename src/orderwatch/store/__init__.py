"""All SQL of orderwatch, behind one ``Store``: the per-source snapshot, events, the outbox, the sources'
bookkeeping and the CLI's queries.

One SQLite file in WAL mode, so the CLI reads while the daemon writes. A ``Store`` serialises its own use with a
lock, so worker threads may share it. The modules beside this one each own one concept:

``db``           the connection: open, write transactions, errors as ``StoreError``
``migrations``   the schema, step by step
``rows``         row types and their mapping by column name
``snapshot``     what is known of each order; rows written and removed
``sweep``        a full sweep's seen keys, and a baseline's rows appended in bulk
``kept``         each source's fingerprint index, kept between sweeps in step with the store's writes
``record``       one poll's change in one transaction
``events``       the event log and its queries
``outbox``       notifications: queue, lease, mark, list
``bookkeeping``  each source's poll bookkeeping
``census``       the snapshot counted by raw state and part (what incremental polls check the server against)
``capabilities`` what each server has proven it does
``silences``     silences, the outbox rows they stopped, and rows waiting out quiet hours
``summaries``    scheduled summaries: a period's events, each period queued once
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from orderwatch.core.fingerprints import FingerprintIndex
from orderwatch.core.model import Change, Event, Known, Order
from orderwatch.errors import StoreError
from orderwatch.store import (
    bookkeeping,
    capabilities,
    census,
    events,
    migrations,
    outbox,
    silences,
    snapshot,
    summaries,
    sweep,
)
from orderwatch.store.db import Database
from orderwatch.store.kept import KeptIndex, Prints
from orderwatch.store.record import Poll, record
from orderwatch.store.rows import DeliveryLike, EventFilter, OrderRow, OutboxRow, SilenceRow, SourceState
from orderwatch.store.sweep import BulkRow, Sweep

__all__ = ["DeliveryLike", "EventFilter", "OrderRow", "OutboxRow", "SilenceRow", "SourceState", "Store"]

_EVERY_EVENT = EventFilter()


class Store:
    """The database. Open with ``Store.open(path)``; ``readonly=True`` for the CLI's queries. ``Store(conn, path)``
    wraps a connection opened elsewhere (in autocommit mode, ``isolation_level=None``), as it is: not migrated."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._db = Database(conn, path)
        self.path = path
        self._kept = KeptIndex()
        self._sweeps: dict[str, Sweep] = {}  # source -> its full sweep under way (seen_begin .. seen_end)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False, timeout: float = 10.0) -> Self:
        """Open (and, unless ``readonly``, create and migrate) the database at ``path``; ``SchemaTooNew`` when a
        newer orderwatch has migrated it."""
        db = Database.connect(Path(path), readonly=readonly, timeout=timeout)
        try:
            if readonly:
                migrations.check(db)
            else:
                migrations.apply(db)
                with db.guard() as conn:
                    left = sweep.unkeyed(conn)
                if left:  # a baseline that died half-way: key its rows now
                    with db.transaction() as conn:
                        for source, after in sweep.unkeyed(conn).items():
                            sweep.key_unkeyed(conn, source, after)
        except BaseException:
            db.close()
            raise
        return cls(db.conn, db.path)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextmanager
    def _writing(self, source: str) -> Iterator[tuple[sqlite3.Connection, list[Prints | None]]]:
        """One write transaction on the orders of ``source``. The body appends what each write means for the kept
        index (``KeptIndex.follows``); the kept index follows once the transaction has committed, and is forgotten
        if it fails."""
        written: list[Prints | None] = []
        with self._db.lock:
            try:
                with self._db.transaction() as conn:
                    current = self._sweeps.get(source)
                    if current is None or current.bulk is None:  # rows another sweep appended: key them first
                        for after in sweep.unkeyed(conn, source).values():
                            sweep.key_unkeyed(conn, source, after)
                            written.append(None)
                    yield conn, written
            except BaseException:
                self._kept.after_commit(source, None)
                raise
            self._kept.after_commit(source, None if None in written else [p for rows in written if rows for p in rows])

    # ---- the snapshot, as a sweep reads it

    def snapshot(self, source: str) -> dict[str, Known]:
        """What the snapshot knows of every order of ``source`` (tests and tools; polls look up page by page)."""
        with self._db.guard() as conn:
            return snapshot.everything(conn, source)

    def known(self, source: str, keys: Sequence[str]) -> dict[str, Known]:
        """What the snapshot knows of these orders of ``source`` (those it has)."""
        with self._db.guard() as conn:
            return snapshot.known(conn, source, keys)

    def known_in_states(self, source: str, states: Sequence[str]) -> dict[str, Known]:
        """The snapshot's orders of ``source`` whose canonical state is one of ``states``."""
        with self._db.guard() as conn:
            return snapshot.in_states(conn, source, states)

    def stored_states(self, source: str) -> list[str]:
        """The distinct canonical states of the stored orders of ``source`` (one index probe per state)."""
        with self._db.guard() as conn:
            return snapshot.stored_states(conn, source)

    def created_at(self, source: str, keys: Sequence[str]) -> dict[str, str]:
        """The stored ``created_at`` of these orders (those that have one)."""
        with self._db.guard() as conn:
            return snapshot.created_at(conn, source, keys)

    # ---- a full sweep: its seen keys and the kept fingerprint index

    def seen_begin(self, source: str, *, bulk: bool = False) -> bool:
        """Start tracking the keys a sweep of ``source`` sees. ``bulk``: the sweep is a baseline that appends its rows
        as they come (``append_rows``), when the source has no rows (then True); they are keyed once it has all its
        pages (``key_bulk``), or at ``seen_end``."""
        with self._db.guard() as conn:
            empty = bulk and conn.execute("SELECT 1 FROM orders WHERE source = ? LIMIT 1", (source,)).fetchone() is None
            self._sweeps[source] = Sweep(conn, source, bulk=empty)
        return empty

    def _sweep(self, source: str) -> Sweep:
        current = self._sweeps.get(source)
        if current is None:
            raise StoreError(f"no sweep of {source!r} under way: seen_begin first")  # a caller's bug
        return current

    def seen_add(self, source: str, keys: Sequence[str]) -> int:
        """Note keys seen by the sweep; returns how many had not been seen before in it."""
        with self._db.guard() as conn:
            return self._sweep(source).add(conn, keys)

    def unseen(self, source: str, *, seen: Callable[[str], bool] | None = None) -> dict[str, Known]:
        """The snapshot's orders of ``source`` that the sweep did not see: neither noted with ``seen_add`` nor
        ``seen`` by the caller (its fingerprint index)."""
        with self._db.guard() as conn:
            return self._sweep(source).unseen(conn, seen)

    def seen_end(self, source: str) -> None:
        """The sweep of ``source`` is over: key the rows it appended in bulk, forget its keys."""
        with self._db.lock:
            current = self._sweeps.get(source)
            if current is None:
                return
            try:
                with self._db.guard() as conn:
                    current.end(conn)
                self._key_bulk(source, current)
            finally:
                del self._sweeps[source]

    def key_bulk(self, source: str) -> int:
        """Key the rows the baseline under way appended in bulk; returns how many distinct orders they hold (an
        order appended twice is kept once, as last appended). The sweep appends no more rows after this."""
        with self._db.lock:
            return self._key_bulk(source, self._sweep(source))

    def _key_bulk(self, source: str, current: Sweep) -> int:
        bulk = current.bulk
        if bulk is None or bulk.after is None:
            current.bulk = None
            return 0
        try:
            with self._writing(source) as (conn, written):  # (still in bulk: it leaves the rows to this call)
                written.append(None)
                return bulk.key(conn, source)
        finally:
            current.bulk = None

    def fingerprint_index(self, source: str) -> FingerprintIndex:
        """Every stored order of ``source`` in a ``FingerprintIndex``, for one sweep; give it back with
        ``fingerprints_done``.

        The index is kept between sweeps and brought up to date with every row this store writes, so only the
        first sweep of a process reads it (row by row: memory stays flat). It is read again when another connection
        has written to the database (``PRAGMA data_version``), and after anything the kept copy cannot follow:
        removed rows, a tag shared by two keys, a full index, a failed write.
        """
        with self._db.guard() as conn:
            return self._kept.lend(conn, source)

    def fingerprints_done(self, source: str, index: FingerprintIndex) -> None:
        """A sweep is done with ``index`` (from ``fingerprint_index``): the rows written meanwhile reach the kept
        index now."""
        with self._db.lock:
            self._kept.give_back(source, index)

    # ---- writes

    def write_rows(self, source: str, orders: Sequence[Order], *, now: str) -> None:
        """Write changed rows that carry no event (content changes, baseline rows) in their own transaction."""
        with self._writing(source) as (conn, written):
            done = snapshot.write(conn, source, orders, now, silent=True)
            written.append(self._kept.follows(source, done.prints, done.added, removed=False))

    def append_rows(self, source: str, rows: Sequence[BulkRow]) -> None:
        """Append rows of the baseline under way in bulk (``seen_begin`` said so), in list order, in one
        transaction, to be keyed by ``key_bulk``. ``StoreError`` when another writer took the source's baseline
        meanwhile: the rows this sweep appended are dropped then, as that baseline makes them stale."""
        current = self._sweep(source)
        bulk = current.bulk
        if bulk is None:
            raise StoreError(f"the sweep of {source!r} appends no rows in bulk")  # a caller's bug
        try:
            with self._writing(source) as (conn, written):
                written.append(None)  # the kept index of an empty source has nothing to follow: read it afresh
                appended = bulk.append(conn, source, rows)
        except BaseException:
            bulk.listed = False  # the list of keys has no rollback journal: it may list rows that were not kept
            raise
        if not appended:
            current.bulk = None
            raise StoreError(
                f"another poll took the baseline of {source!r} while this one was sweeping; this poll is dropped"
            )

    def record(
        self,
        source: str,
        change: Change,
        deliveries: Sequence[DeliveryLike],
        *,
        now: str,
        full: bool,
        requests: int = 0,
        duration: float | None = None,
        error: str | None = None,
        full_due: str | None = None,
        served_page: int | None = None,
    ) -> list[Event]:
        """Write ``change`` — snapshot rows, events and their outbox rows — in one transaction, and the source's
        bookkeeping (``full_due``: what the poll could not settle, so the next poll sweeps in full;
        ``served_page``: the server's cap on the page size that a full sweep saw).

        Returns the events with their ids (and, for ``vanished``, the order as last stored).
        """
        poll = Poll(
            now=now,
            full=full,
            requests=requests,
            duration=duration,
            error=error,
            full_due=full_due,
            served_page=served_page,
        )
        with self._writing(source) as (conn, written):
            done = record(conn, source, change, deliveries, poll)
            written.append(self._kept.follows(source, done.written.prints, done.written.added, removed=done.removed))
        return done.events

    # ---- what incremental polls check the server against

    def state_counts(self, source: str, *, created_since: str | None = None) -> dict[str, int]:
        """Stored orders of ``source`` by raw state (created at or after ``created_since``)."""
        with self._db.guard() as conn:
            return census.state_counts(conn, source, created_since)

    def any_keys(self, source: str, *, exclude: Sequence[str] = (), limit: int = 1) -> list[str]:
        """Up to ``limit`` stored keys of ``source`` not in ``exclude``."""
        with self._db.guard() as conn:
            found: list[str] = []
            skip = set(exclude)
            for (key,) in conn.execute("SELECT key FROM order_keys WHERE source = ?", (source,)):
                if key not in skip:
                    found.append(key)
                    if len(found) >= limit:
                        break
            return found

    def newest_created(self, source: str) -> str | None:
        """The latest creation time of the stored orders of ``source``."""
        with self._db.guard() as conn:
            return census.newest(conn, source)

    def count_orders(
        self,
        source: str,
        *,
        state: str | None = None,
        by: census.By = "created",
        lo: str | None = None,
        hi: str | None = None,
        key_holds: str | None = None,
    ) -> int:
        """Stored orders of ``source`` in raw ``state`` in a part (see ``census.count``)."""
        with self._db.guard() as conn:
            return census.count(conn, source, state=state, by=by, lo=lo, hi=hi, key_holds=key_holds)

    def order_rows(
        self,
        source: str,
        *,
        states: Sequence[str] | None = None,
        keys: Sequence[str] = (),
        by: census.By = "created",
        lo: str | None = None,
        hi: str | None = None,
    ) -> list[tuple[str, str, str | None]]:
        """(key, raw state, creation time) of stored orders (see ``census.rows``)."""
        with self._db.guard() as conn:
            return census.rows(conn, source, states=states, keys=keys, by=by, lo=lo, hi=hi)

    def partition_values(
        self, source: str, *, state: str | None, by: census.By, lo: str | None, hi: str | None
    ) -> list[str]:
        """Sorted partition values of a part, enough to cut it (see ``census.values``)."""
        with self._db.guard() as conn:
            return census.values(conn, source, state=state, by=by, lo=lo, hi=hi)

    def capabilities(self, source: str) -> dict[str, tuple[bool, str]]:
        """What the server of ``source`` has proven: name -> (proven, when learned)."""
        with self._db.guard() as conn:
            return capabilities.get(conn, source)

    def learn(self, source: str, found: Mapping[str, tuple[bool, str]], *, now: str) -> None:
        """Remember what the server of ``source`` proved (name -> (proven, note))."""
        with self._db.transaction() as conn:
            capabilities.learn(conn, source, found, now)

    # ---- sources' bookkeeping

    def source_state(self, source: str) -> SourceState | None:
        """The bookkeeping row of ``source``, if it was ever polled."""
        with self._db.guard() as conn:
            return bookkeeping.get(conn, source)

    def source_states(self) -> list[SourceState]:
        """Every source ever polled."""
        with self._db.guard() as conn:
            return bookkeeping.every(conn)

    def record_failure(self, source: str, error: str, *, now: str) -> SourceState:
        """Note a failed poll of ``source``; returns its state after the update."""
        with self._db.transaction() as conn:
            bookkeeping.ensure(conn, source)
            conn.execute("UPDATE sources SET last_poll_at = ? WHERE name = ?", (now, source))
            bookkeeping.note_failure(conn, source, error, now)
            state = bookkeeping.get(conn, source)
        assert state is not None
        return state

    def set_next_poll(self, source: str, when: str | None) -> None:
        """Remember when the daemon will next poll ``source`` (for ``orderwatch status``)."""
        with self._db.transaction() as conn:
            bookkeeping.set_next_poll(conn, source, when)

    def set_alerted(self, source: str, alerted: bool) -> None:
        """Remember whether a health alert is out for ``source``."""
        with self._db.transaction() as conn:
            bookkeeping.set_alerted(conn, source, alerted)

    # ---- queries for the CLI

    def events(self, flt: EventFilter = _EVERY_EVENT) -> list[Event]:
        """Recorded events matching ``flt``, oldest first (``limit``: the newest N, still oldest first)."""
        with self._db.guard() as conn:
            return events.matching(conn, flt)

    def events_by_id(self, ids: Sequence[int]) -> list[Event]:
        """The events with these ids, in id order."""
        with self._db.guard() as conn:
            return events.by_id(conn, ids)

    def orders(self, source: str | None = None, state: str | None = None) -> list[OrderRow]:
        """The current snapshot, newest change first."""
        with self._db.guard() as conn:
            return snapshot.listing(conn, source, state)

    # ---- the outbox

    def enqueue_notice(self, channel: str, rule: str, title: str, body: str, *, now: str) -> int:
        """Queue a free-form notice (e.g. a health alert) for ``channel``; returns its outbox id."""
        with self._db.transaction() as conn:
            return outbox.enqueue_notice(conn, channel, rule, title, body, now)

    def claim_due(self, *, now: str, lease_until: str, limit: int = 50) -> list[OutboxRow]:
        """Lease up to ``limit`` due pending rows (so a second deliverer skips them) and return them."""
        with self._db.transaction() as conn:
            return outbox.claim_due(conn, now, lease_until, limit)

    def release_leases(self) -> int:
        """Drop every lease on pending rows (at daemon start: the process that held them is gone)."""
        with self._db.transaction() as conn:
            return outbox.release_leases(conn)

    def mark_sent(self, row_id: int, *, now: str) -> None:
        """The notification reached every URL of its channel."""
        with self._db.transaction() as conn:
            outbox.mark_sent(conn, row_id, now)

    def mark_retry(self, row_id: int, *, next_at: str, error: str, done_urls: Sequence[int]) -> None:
        """Some URL failed for now: try again at ``next_at``; ``done_urls`` already got it."""
        with self._db.transaction() as conn:
            outbox.mark_retry(conn, row_id, next_at, error, done_urls)

    def mark_failed(self, row_id: int, *, error: str, done_urls: Sequence[int]) -> None:
        """Give up on a row: a permanent failure, or retries ran out."""
        with self._db.transaction() as conn:
            outbox.mark_failed(conn, row_id, error, done_urls)

    def outbox(self, status: str | None = None, limit: int | None = None) -> list[OutboxRow]:
        """Outbox rows, oldest first, optionally of one status."""
        with self._db.guard() as conn:
            return outbox.listing(conn, status, limit)

    def outbox_depth(self) -> int:
        """How many notifications are waiting to be delivered."""
        with self._db.guard() as conn:
            return outbox.depth(conn)

    def requeue(self, ids: Sequence[int] = (), *, now: str) -> int:
        """Make failed (or the given) rows pending and due now; returns how many changed."""
        with self._db.transaction() as conn:
            return outbox.requeue(conn, ids, now)

    # ---- notification policies: silences, quiet hours, scheduled summaries

    def add_silence(
        self, source: str, *, order_id: str | None, rule: str | None, comment: str, now: str, ends: str
    ) -> int:
        """A new silence from ``now`` until ``ends``; returns its id."""
        with self._db.transaction() as conn:
            return silences.add(conn, source, order_id, rule, comment, now, ends)

    def silences(self) -> list[SilenceRow]:
        """Every silence, oldest first."""
        with self._db.guard() as conn:
            return silences.listing(conn)

    def active_silences(self, *, now: str) -> list[SilenceRow]:
        """The silences in force at ``now``."""
        with self._db.guard() as conn:
            return silences.active(conn, now)

    def expire_silence(self, silence_id: int, *, now: str) -> bool:
        """End a silence now; False when no such silence is in force."""
        with self._db.transaction() as conn:
            return silences.expire(conn, silence_id, now)

    def newly_ended_silences(self, *, now: str) -> list[SilenceRow]:
        """Silences that have ended since last asked (each returned once, ever); a read alone when there are none
        (the daemon asks every delivery step)."""
        with self._db.guard() as conn:
            if not silences.any_ended(conn, now):
                return []
        with self._db.transaction() as conn:
            return silences.newly_ended(conn, now)

    def silence_row(self, row_id: int, channel: str, stopped: Mapping[int, int]) -> None:
        """Outbox row ``row_id`` is not sent: silences stopped all its events (event id -> silence id)."""
        with self._db.transaction() as conn:
            silences.silence_row(conn, row_id, channel, stopped)

    def narrow_row(self, row_id: int, channel: str, keep: Sequence[int], stopped: Mapping[int, int]) -> None:
        """Outbox row ``row_id`` announces only ``keep``; silences stopped the rest (event id -> silence id)."""
        with self._db.transaction() as conn:
            silences.narrow(conn, row_id, channel, keep, stopped)

    def silenced_events(self, event_ids: Sequence[int]) -> dict[int, list[tuple[str, int]]]:
        """For each of these events a silence stopped: (channel, silence id) pairs."""
        with self._db.guard() as conn:
            return silences.silenced_events(conn, event_ids)

    def hold(self, row_id: int, *, until: str, reason: str) -> None:
        """Outbox row ``row_id`` waits until ``until`` for ``reason`` (``quiet``)."""
        with self._db.transaction() as conn:
            silences.hold(conn, row_id, until, reason)

    def wake_held(self, channels: Sequence[str], *, now: str) -> int:
        """Rows of ``channels`` waiting out quiet hours are due ``now``, to be judged again; returns how many."""
        with self._db.transaction() as conn:
            return silences.wake_held(conn, channels, now)

    def holds(self, row_ids: Sequence[int]) -> dict[int, tuple[str | None, int | None]]:
        """(hold, silenced_by) of these outbox rows."""
        with self._db.guard() as conn:
            return silences.holds(conn, row_ids)

    def events_between(self, start: str, end: str, sources: Sequence[str], kinds: Sequence[str]) -> list[Event]:
        """Events detected from ``start`` to ``end`` (exclusive) of these sources and kinds."""
        with self._db.guard() as conn:
            return summaries.events_between(conn, start, end, sources, kinds)

    def summary_queued(self, summary: str, period: str) -> bool:
        """True when this period of ``summary`` was queued already."""
        with self._db.guard() as conn:
            return summaries.queued(conn, summary, period)

    def queue_summary(self, summary: str, period: str, channel: str, title: str, body: str, *, now: str) -> int | None:
        """Queue this period of ``summary`` once, ever (the record and the outbox row in one transaction); its outbox
        id, or None when it was queued before."""
        with self._db.transaction() as conn:
            return summaries.queue(conn, summary, period, channel, title, body, now)

    def summary_new(self, summary: str, period: str, *, now: str) -> bool:
        """True when ``summary`` was never seen: ``period`` (fired before it was configured) is then noted as passed
        without a message."""
        with self._db.transaction() as conn:
            return summaries.first_sight(conn, summary, period, now)

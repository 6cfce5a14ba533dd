"""One poll's change recorded in one transaction: snapshot rows, events, their outbox rows and the source's
bookkeeping, all or nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace

from orderwatch.model import Change, Event
from orderwatch.store import bookkeeping, events, outbox, snapshot
from orderwatch.store.rows import DeliveryLike


@dataclass(frozen=True, slots=True)
class Poll:
    """What is said of the poll beside its change."""

    now: str
    full: bool
    requests: int = 0
    duration: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a record wrote: the events stored (with ids), and the rows written, for the kept index."""

    events: list[Event]
    prints: list[tuple[int, int]]
    removed: bool


def record(
    conn: sqlite3.Connection, source: str, change: Change, deliveries: Sequence[DeliveryLike], poll: Poll
) -> Recorded:
    """Write ``change`` inside the caller's transaction."""
    now = poll.now
    bookkeeping.ensure(conn, source)
    last = snapshot.remove(conn, source, change.removals) if change.removals else {}
    prints = snapshot.upsert(conn, source, change.upserts, now)
    stored: list[Event] = []
    for ev in change.events:
        order_json = ev.order_json.decode() if ev.order_json is not None else last.get(ev.order_id, "{}")
        stored.append(replace(ev, id=events.insert(conn, ev, order_json), order_json=order_json.encode()))
    for d in deliveries:
        outbox.enqueue_events(conn, d.channel, d.rule, d.digest, [stored[i].id or 0 for i in d.event_indexes], now)
    clean = poll.full and poll.error is None
    bookkeeping.note_poll(
        conn,
        source,
        {
            "now": now,
            "count": snapshot.count(conn, source),
            "requests": poll.requests,
            "duration": poll.duration,
            "baseline": change.baseline,
            "full": clean,
            "tried": clean and not change.baseline,
        },
    )
    if poll.error is None:
        bookkeeping.note_success(conn, source, now)
    else:
        bookkeeping.note_failure(conn, source, poll.error, now)
    return Recorded(stored, prints, bool(change.removals))

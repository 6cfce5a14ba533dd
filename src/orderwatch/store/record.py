"""One poll's change recorded in one transaction: snapshot rows, events, their outbox rows and the source's
bookkeeping, all or nothing.

Each event is recorded only if its premise still holds in the transaction: a transition's order is still stored
in the raw state it left (``raw_from``), an appeared order is still not stored, a vanished order still is. When
two writers poll one source at once, the second to record finds the first's rows: its events for them are
dropped, with their outbox rows and the rows that carried them, so every change is recorded, and notified, once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace

from orderwatch.core.model import Change, Event
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
    full_due: str | None = None  # what the poll could not settle (the next one sweeps in full)
    served_page: int | None = None  # the server's cap on the page size a full sweep saw (kept if it is complete)


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a record wrote: the events stored (with ids), and the rows written, for the kept index."""

    events: list[Event]
    written: snapshot.Written
    removed: bool


def _premises(change: Change, stored: dict[str, snapshot.Stored]) -> list[bool]:
    """For each event, in order, whether its premise holds against the stored rows (and the events before it)."""
    raw: dict[str, str | None] = {k: row.raw_state for k, row in stored.items()}
    held: list[bool] = []
    for ev in change.events:
        key = ev.order_id
        if ev.kind == "appeared":
            ok = key not in raw
        elif ev.kind == "transition":
            ok = key in raw and raw[key] == ev.raw_from
        else:
            ok = key in raw
        held.append(ok)
        if ok and ev.kind == "vanished":
            del raw[key]
        elif ok:
            raw[key] = ev.raw_to
    return held


def record(
    conn: sqlite3.Connection, source: str, change: Change, deliveries: Sequence[DeliveryLike], poll: Poll
) -> Recorded:
    """Write ``change`` inside the caller's transaction; returns what was written."""
    now = poll.now
    bookkeeping.ensure(conn, source)
    keys = {ev.order_id for ev in change.events} | {o.key for o in change.upserts} | set(change.removals)
    stored = snapshot.stored(conn, source, sorted(keys))
    held = _premises(change, stored)
    carried = {ev.order_id for ev, ok in zip(change.events, held, strict=True) if ok}
    dropped = {ev.order_id for ev, ok in zip(change.events, held, strict=True) if not ok} - carried
    guarded = snapshot.baselined(conn, source)  # then a removal without an event is another writer's to make
    removals = [k for k in change.removals if k not in dropped and (k in carried or not guarded)]
    last = snapshot.remove(conn, source, removals) if removals else {}
    written = snapshot.write(
        conn, source, [o for o in change.upserts if o.key in carried], now, silent=False, rows=stored
    )
    quiet = snapshot.write(
        conn,
        source,
        [o for o in change.upserts if o.key not in carried and o.key not in dropped],
        now,
        silent=True,
        rows=stored,
    )
    written.prints += quiet.prints
    written.added += quiet.added
    recorded: dict[int, Event] = {}
    for i, (ev, ok) in enumerate(zip(change.events, held, strict=True)):
        if ok:
            order_json = ev.order_json.decode() if ev.order_json is not None else last.get(ev.order_id, "{}")
            recorded[i] = replace(ev, id=events.insert(conn, ev, order_json), order_json=order_json.encode())
    for d in deliveries:
        if any(not 0 <= i < len(change.events) for i in d.event_indexes):
            raise IndexError(f"a delivery names an event the change does not hold: {d.event_indexes}")  # a bug
        ids = [recorded[i].id or 0 for i in d.event_indexes if i in recorded]
        if ids:
            outbox.enqueue_events(conn, d.channel, d.rule, d.digest, ids, now)
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
            "full_due": poll.full_due,
            "served_page": poll.served_page,
        },
    )
    if poll.error is None:
        bookkeeping.note_success(conn, source, now)
    else:
        bookkeeping.note_failure(conn, source, poll.error, now)
    return Recorded(list(recorded.values()), written, bool(last))

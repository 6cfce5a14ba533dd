"""Scheduled summaries: the events of a period, and each (summary, period) queued once.

``queue`` inserts the ``summary_runs`` row (its key is the summary's name and the period) and the outbox row in one
transaction: a period whose row exists is never queued again, across restarts and kill -9.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from orderwatch.core.model import Event
from orderwatch.store import outbox, rows
from orderwatch.store.db import marks, named


def events_between(
    conn: sqlite3.Connection, start: str, end: str, sources: Sequence[str], kinds: Sequence[str]
) -> list[Event]:
    """The events detected from ``start`` (inclusive) to ``end`` (exclusive) of these sources and kinds."""
    if not sources or not kinds:
        return []
    sql = (
        f"SELECT {rows.EVENT_COLUMNS} FROM events WHERE detected_at >= ? AND detected_at < ?"
        f" AND source IN ({marks(len(sources))}) AND kind IN ({marks(len(kinds))}) ORDER BY id"
    )
    return [rows.event(r) for r in named(conn, sql, [start, end, *sources, *kinds])]


def queued(conn: sqlite3.Connection, summary: str, period: str) -> bool:
    """True when this period of ``summary`` was queued already."""
    sql = "SELECT 1 FROM summary_runs WHERE summary = ? AND period = ?"
    return conn.execute(sql, (summary, period)).fetchone() is not None


def queue(
    conn: sqlite3.Connection, summary: str, period: str, channel: str, title: str, body: str, now: str
) -> int | None:
    """Queue this period of ``summary`` for ``channel`` (inside the caller's transaction); its outbox id, or None
    when it was queued before."""
    cur = conn.execute(
        "INSERT INTO summary_runs (summary, period, outbox_id, created_at) VALUES (?, ?, 0, ?)"
        " ON CONFLICT (summary, period) DO NOTHING",
        (summary, period, now),
    )
    if cur.rowcount == 0:
        return None
    row_id = outbox.enqueue_notice(conn, channel, f"summary:{summary}", title, body, now)
    conn.execute("UPDATE summary_runs SET outbox_id = ? WHERE summary = ? AND period = ?", (row_id, summary, period))
    return row_id


def first_sight(conn: sqlite3.Connection, summary: str, period: str, now: str) -> bool:
    """When ``summary`` has no record at all: note ``period`` as passed without a message (outbox id 0) and return
    True (inside the caller's transaction)."""
    if conn.execute("SELECT 1 FROM summary_runs WHERE summary = ? LIMIT 1", (summary,)).fetchone() is not None:
        return False
    conn.execute(
        "INSERT INTO summary_runs (summary, period, outbox_id, created_at) VALUES (?, ?, 0, ?)", (summary, period, now)
    )
    return True

"""Silences and the outbox rows they stopped, and the other waits of notification policies (quiet hours).

A silence names a source and optionally an order and a rule; it holds from when it is added until ``ends_at`` or
until it is expired by hand (``expired_at``). Rows it stops are marked ``silenced`` (with ``silenced_by``), their
events kept; which events of which channel it stopped is kept in ``silenced_events`` (for ``orderwatch changes``).
That a silence ended is logged once: ``end_logged`` remembers it across restarts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

import orjson

from orderwatch.store.db import marks, named
from orderwatch.store.rows import SILENCE_COLUMNS, SilenceRow, silence


def add(
    conn: sqlite3.Connection, source: str, order_id: str | None, rule: str | None, comment: str, now: str, ends: str
) -> int:
    """A new silence from ``now`` until ``ends``; returns its id."""
    cur = conn.execute(
        "INSERT INTO silences (source, order_id, rule, comment, created_at, ends_at) VALUES (?, ?, ?, ?, ?, ?)",
        (source, order_id, rule, comment, now, ends),
    )
    return int(cur.lastrowid or 0)


def listing(conn: sqlite3.Connection) -> list[SilenceRow]:
    """Every silence, oldest first (none in a database not yet migrated to 0009_policies)."""
    if not _migrated(conn):
        return []
    return [silence(r) for r in named(conn, f"SELECT {SILENCE_COLUMNS} FROM silences ORDER BY id")]


def active(conn: sqlite3.Connection, now: str) -> list[SilenceRow]:
    """The silences in force at ``now``."""
    sql = f"SELECT {SILENCE_COLUMNS} FROM silences WHERE expired_at IS NULL AND ends_at > ? ORDER BY id"
    return [silence(r) for r in named(conn, sql, (now,))]


def expire(conn: sqlite3.Connection, silence_id: int, now: str) -> bool:
    """End a silence now; False when there is no such silence in force."""
    cur = conn.execute(
        "UPDATE silences SET expired_at = ? WHERE id = ? AND expired_at IS NULL AND ends_at > ?",
        (now, silence_id, now),
    )
    return cur.rowcount > 0


def any_ended(conn: sqlite3.Connection, now: str) -> bool:
    """True when some silence has ended and was not yet said to have ended."""
    sql = "SELECT 1 FROM silences WHERE end_logged = 0 AND (ends_at <= ? OR expired_at IS NOT NULL) LIMIT 1"
    return _migrated(conn) and conn.execute(sql, (now,)).fetchone() is not None


def newly_ended(conn: sqlite3.Connection, now: str) -> list[SilenceRow]:
    """The silences that have ended and were not yet said to have ended; they are noted as said."""
    sql = (
        f"UPDATE silences SET end_logged = 1 WHERE end_logged = 0 AND (ends_at <= ? OR expired_at IS NOT NULL)"
        f" RETURNING {SILENCE_COLUMNS}"
    )
    return sorted((silence(r) for r in named(conn, sql, (now,))), key=lambda s: s.id)


def silence_row(conn: sqlite3.Connection, row_id: int, channel: str, stopped: Mapping[int, int]) -> None:
    """Outbox row ``row_id`` is not sent: every one of its events was stopped (event id -> silence id)."""
    first = min(stopped.values())
    conn.execute(
        "UPDATE outbox SET status = 'silenced', silenced_by = ?, lease_until = NULL WHERE id = ?", (first, row_id)
    )
    _note(conn, channel, stopped)


def narrow(
    conn: sqlite3.Connection, row_id: int, channel: str, keep: Sequence[int], stopped: Mapping[int, int]
) -> None:
    """Outbox row ``row_id`` announces only the events ``keep``; the others were stopped by silences."""
    conn.execute("UPDATE outbox SET event_ids = ? WHERE id = ?", (orjson.dumps(list(keep)).decode(), row_id))
    _note(conn, channel, stopped)


def _note(conn: sqlite3.Connection, channel: str, stopped: Mapping[int, int]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO silenced_events (event_id, channel, silence_id) VALUES (?, ?, ?)",
        [(event_id, channel, silence_id) for event_id, silence_id in stopped.items()],
    )


def _migrated(conn: sqlite3.Connection) -> bool:
    """True when the database has this module's tables (a read-only reader may meet one not yet migrated)."""
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'silenced_events'"
    return conn.execute(sql).fetchone() is not None


def silenced_events(conn: sqlite3.Connection, event_ids: Sequence[int]) -> dict[int, list[tuple[str, int]]]:
    """For each of these events that a silence stopped: (channel, silence id) pairs (none in a database not yet
    migrated to 0009_policies)."""
    found: dict[int, list[tuple[str, int]]] = {}
    if not _migrated(conn):
        return found
    ids = list(event_ids)
    for at in range(0, len(ids), 500):
        chunk = ids[at : at + 500]
        sql = (
            "SELECT event_id, channel, silence_id FROM silenced_events"
            f" WHERE event_id IN ({marks(len(chunk))}) ORDER BY event_id, channel"
        )
        for event_id, channel, silence_id in conn.execute(sql, chunk):
            found.setdefault(event_id, []).append((channel, silence_id))
    return found


def hold(conn: sqlite3.Connection, row_id: int, until: str, reason: str) -> None:
    """Outbox row ``row_id`` waits until ``until`` for ``reason`` (``quiet``)."""
    conn.execute(
        "UPDATE outbox SET next_attempt_at = ?, hold = ?, lease_until = NULL WHERE id = ?", (until, reason, row_id)
    )


def wake_held(conn: sqlite3.Connection, channels: Sequence[str], now: str) -> int:
    """Rows of ``channels`` waiting out quiet hours are due ``now`` (to be judged again, their quiet hours having
    changed); returns how many."""
    if not channels:
        return 0
    cur = conn.execute(
        f"UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending' AND hold = 'quiet'"
        f" AND channel IN ({marks(len(channels))})",
        (now, *channels),
    )
    return cur.rowcount


def holds(conn: sqlite3.Connection, row_ids: Sequence[int]) -> dict[int, tuple[str | None, int | None]]:
    """(hold, silenced_by) of these outbox rows (none in a database not yet migrated to 0009_policies)."""
    found: dict[int, tuple[str | None, int | None]] = {}
    if not _migrated(conn):
        return found
    ids = list(row_ids)
    for at in range(0, len(ids), 500):
        chunk = ids[at : at + 500]
        sql = f"SELECT id, hold, silenced_by FROM outbox WHERE id IN ({marks(len(chunk))})"
        for row_id, why, by in conn.execute(sql, chunk):
            found[row_id] = (why, by)
    return found

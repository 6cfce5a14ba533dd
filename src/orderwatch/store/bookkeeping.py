"""Each source's bookkeeping row: when it was polled, its baseline, its failures, its next poll."""

from __future__ import annotations

import sqlite3
from typing import Any

from orderwatch.store import rows
from orderwatch.store.db import named


def ensure(conn: sqlite3.Connection, source: str) -> None:
    """Make sure ``source`` has its row."""
    conn.execute("INSERT OR IGNORE INTO sources (name) VALUES (?)", (source,))


def get(conn: sqlite3.Connection, source: str) -> rows.SourceState | None:
    """The row of ``source``, if it was ever polled."""
    found = named(conn, f"SELECT {rows.SOURCE_COLUMNS} FROM sources WHERE name = ?", (source,))
    return rows.source_state(found[0]) if found else None


def every(conn: sqlite3.Connection) -> list[rows.SourceState]:
    """Every source ever polled, by name."""
    return [rows.source_state(r) for r in named(conn, f"SELECT {rows.SOURCE_COLUMNS} FROM sources ORDER BY name")]


def note_poll(conn: sqlite3.Connection, source: str, poll: dict[str, Any]) -> None:
    """A poll of ``source`` was recorded: ``poll`` has now, count, requests, duration, baseline, full, tried,
    full_due (what it could not settle; None: nothing) and served_page (the server's page-size cap a complete
    full sweep saw; None: it saw none)."""
    conn.execute(
        "UPDATE sources SET last_poll_at = :now, orders = :count, last_requests = :requests,"
        " last_duration = :duration,"
        " baseline_at = CASE WHEN :baseline AND baseline_at IS NULL THEN :now ELSE baseline_at END,"
        " last_full_at = CASE WHEN :full THEN :now ELSE last_full_at END,"
        " served_page = CASE WHEN :full THEN :served_page ELSE served_page END,"
        " baseline_tries = baseline_tries + CASE WHEN :tried AND baseline_at IS NULL THEN 1 ELSE 0 END,"
        " full_due = :full_due"
        " WHERE name = :name",
        {**poll, "name": source},
    )


def note_success(conn: sqlite3.Connection, source: str, now: str) -> None:
    """The poll of ``source`` succeeded: its failure streak ends."""
    conn.execute(
        "UPDATE sources SET last_success_at = ?, failures = 0, failing_since = NULL WHERE name = ?", (now, source)
    )


def note_failure(conn: sqlite3.Connection, source: str, error: str, now: str) -> None:
    """The poll of ``source`` failed with ``error``: the streak grows."""
    conn.execute(
        "UPDATE sources SET last_error = ?, last_error_at = ?, failures = failures + 1,"
        " failing_since = coalesce(failing_since, ?) WHERE name = ?",
        (error, now, now, source),
    )


def set_next_poll(conn: sqlite3.Connection, source: str, when: str | None) -> None:
    """When the daemon will next poll ``source``."""
    ensure(conn, source)
    conn.execute("UPDATE sources SET next_poll_at = ? WHERE name = ?", (when, source))


def set_alerted(conn: sqlite3.Connection, source: str, alerted: bool) -> None:
    """Whether a health alert is out for ``source``."""
    conn.execute("UPDATE sources SET alerted = ? WHERE name = ?", (int(alerted), source))

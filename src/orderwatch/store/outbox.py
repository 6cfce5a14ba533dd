"""The transactional outbox: notifications queued with the events they announce, leased by a deliverer, marked
sent, retried or failed, and listed for the CLI."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from orderwatch.store import rows
from orderwatch.store.db import marks, named


def enqueue_events(
    conn: sqlite3.Connection, channel: str, rule: str, digest: bool, ids: Sequence[int], now: str
) -> None:
    """Queue one notification of the events ``ids`` for ``channel``, due now."""
    conn.execute(
        "INSERT INTO outbox (channel, rule, digest, event_ids, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
        (channel, rule, int(digest), orjson.dumps(list(ids)).decode(), now, now),
    )


def enqueue_notice(conn: sqlite3.Connection, channel: str, rule: str, title: str, body: str, now: str) -> int:
    """Queue a free-form notice for ``channel``, due now; returns its id."""
    cur = conn.execute(
        "INSERT INTO outbox (channel, rule, digest, event_ids, created_at, next_attempt_at, title, body)"
        " VALUES (?, ?, 0, '[]', ?, ?, ?, ?)",
        (channel, rule, now, now, title, body),
    )
    return int(cur.lastrowid or 0)


def claim_due(conn: sqlite3.Connection, now: str, lease_until: str, limit: int) -> list[rows.OutboxRow]:
    """Lease up to ``limit`` due pending rows (so a second deliverer skips them); returns them by id."""
    claimed = named(
        conn,
        "UPDATE outbox SET lease_until = ? WHERE id IN (SELECT id FROM outbox WHERE status = 'pending'"
        " AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?) ORDER BY id LIMIT ?)"
        f" RETURNING {rows.OUTBOX_COLUMNS}",
        (lease_until, now, now, limit),
    )
    return sorted((rows.outbox_row(r) for r in claimed), key=lambda r: r.id)


def release_leases(conn: sqlite3.Connection) -> int:
    """Drop every lease on pending rows; returns how many."""
    return conn.execute(
        "UPDATE outbox SET lease_until = NULL WHERE status = 'pending' AND lease_until IS NOT NULL"
    ).rowcount


def mark_sent(conn: sqlite3.Connection, row_id: int, now: str) -> None:
    """The notification reached every URL of its channel."""
    conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, lease_until = NULL,"
        " last_error = NULL WHERE id = ?",
        (now, row_id),
    )


def mark_retry(conn: sqlite3.Connection, row_id: int, next_at: str, error: str, done_urls: Sequence[int]) -> None:
    """Some URL failed for now: due again at ``next_at``; ``done_urls`` already got it."""
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, done_urls = ?,"
        " lease_until = NULL WHERE id = ?",
        (next_at, error, orjson.dumps(sorted(done_urls)).decode(), row_id),
    )


def mark_failed(conn: sqlite3.Connection, row_id: int, error: str, done_urls: Sequence[int]) -> None:
    """Give up on a row."""
    conn.execute(
        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, done_urls = ?,"
        " lease_until = NULL WHERE id = ?",
        (error, orjson.dumps(sorted(done_urls)).decode(), row_id),
    )


def requeue(conn: sqlite3.Connection, ids: Sequence[int], now: str) -> int:
    """Make failed (or the given unsent) rows pending and due now; returns how many changed."""
    if ids:
        cur = conn.execute(
            "UPDATE outbox SET status = 'pending', next_attempt_at = ?, lease_until = NULL"
            f" WHERE status != 'sent' AND id IN ({marks(len(ids))})",
            (now, *ids),
        )
    else:
        cur = conn.execute(
            "UPDATE outbox SET status = 'pending', next_attempt_at = ?, lease_until = NULL WHERE status = 'failed'",
            (now,),
        )
    return cur.rowcount


def listing(conn: sqlite3.Connection, status: str | None, limit: int | None) -> list[rows.OutboxRow]:
    """Outbox rows, oldest first, optionally of one status."""
    sql = f"SELECT {rows.OUTBOX_COLUMNS} FROM outbox" + (" WHERE status = ?" if status else "") + " ORDER BY id"
    params: list[Any] = [status] if status else []
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [rows.outbox_row(r) for r in named(conn, sql, params)]


def depth(conn: sqlite3.Connection) -> int:
    """How many notifications are waiting to be delivered."""
    return int(conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0])

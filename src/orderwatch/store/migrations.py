"""The schema, as migrations applied in order, once each (sqlite-utils ``Migrations``).

A migration that rewrites rows works a batch of keys at a time, so that memory stays flat for any account size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orderwatch.errors import StoreError
from orderwatch.fingerprints import fingerprint, tag_of
from orderwatch.model import content_hash
from orderwatch.store.db import Database

if TYPE_CHECKING:
    import sqlite_utils


def migrations() -> Any:
    """The schema migrations (sqlite-utils ``Migrations``), built on first use: read-only commands never need them
    and skip importing sqlite-utils."""
    from sqlite_utils.migrations import Migrations

    migrations = Migrations("orderwatch")
    for name, step in _STEPS:
        migrations(name=name)(step)
    return migrations


Step = Callable[["sqlite_utils.Database"], None]
_STEPS: list[tuple[str, Step]] = []


def _migration(name: str) -> Callable[[Step], Step]:
    """Register a schema step under ``name`` (applied in order, once, by ``migrations().apply``)."""

    def register(step: Step) -> Step:
        _STEPS.append((name, step))
        return step

    return register


@_migration("0001_initial")
def _m0001(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE sources (
            name TEXT PRIMARY KEY,
            baseline_at TEXT,
            last_poll_at TEXT,
            last_success_at TEXT,
            last_full_at TEXT,
            last_error TEXT,
            last_error_at TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            failing_since TEXT,
            alerted INTEGER NOT NULL DEFAULT 0,
            orders INTEGER NOT NULL DEFAULT 0,
            last_requests INTEGER,
            last_duration REAL
        );
        CREATE TABLE orders (
            source TEXT NOT NULL,
            key TEXT NOT NULL,
            raw_state TEXT NOT NULL,
            state TEXT NOT NULL,
            hash TEXT NOT NULL,
            raw TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            changed_at TEXT NOT NULL,
            PRIMARY KEY (source, key)
        ) WITHOUT ROWID;
        CREATE INDEX orders_by_state ON orders (source, state);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            order_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT,
            raw_from TEXT,
            raw_to TEXT,
            detected_at TEXT NOT NULL,
            order_json TEXT NOT NULL
        );
        CREATE INDEX events_by_time ON events (detected_at);
        CREATE INDEX events_by_order ON events (source, order_id);
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            rule TEXT NOT NULL,
            digest INTEGER NOT NULL DEFAULT 0,
            event_ids TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            next_attempt_at TEXT NOT NULL,
            lease_until TEXT,
            done_urls TEXT NOT NULL DEFAULT '[]',
            last_error TEXT,
            sent_at TEXT
        );
        CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
        """
    )


@_migration("0002_notices_and_schedule")
def _m0002(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        ALTER TABLE outbox ADD COLUMN title TEXT;
        ALTER TABLE outbox ADD COLUMN body TEXT;
        ALTER TABLE sources ADD COLUMN next_poll_at TEXT;
        """
    )


@_migration("0003_baseline_tries")
def _m0003(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE sources ADD COLUMN baseline_tries INTEGER NOT NULL DEFAULT 0")


@_migration("0004_fast_sweeps")
def _m0004(db: sqlite_utils.Database) -> None:
    # A full sweep starts by reading every stored (key, state, hash): a covering index reads ~80 bytes a row instead
    # of the whole row with its JSON, twice as fast.
    db.execute("CREATE INDEX orders_digest ON orders (source, key, state, hash)")
    # Content hashes moved from BLAKE2b to XXH3-128. The stored raw text is the canonical JSON the hash is taken of,
    # so every hash is recomputed exactly here (a batch of keys at a time), and the next sweep rewrites nothing.
    conn = db.conn
    after: tuple[str, str] = ("", "")
    while True:
        rows = conn.execute(
            "SELECT source, key, raw FROM orders WHERE (source, key) > (?, ?) ORDER BY source, key LIMIT 5000", after
        ).fetchall()
        if not rows:
            return
        conn.executemany(
            "UPDATE orders SET hash = ? WHERE source = ? AND key = ?",
            [(content_hash(raw.encode()), source, key) for source, key, raw in rows],
        )
        after = (rows[-1][0], rows[-1][1])


@_migration("0005_fingerprints")
def _m0005(db: sqlite_utils.Database) -> None:
    # A full sweep starts by reading a fingerprint of every stored order. Kept in the row as two integers (see
    # fingerprints.py), they are read at a third of the cost of hashing each row's key, state and hash text anew.
    conn = db.conn
    conn.execute("ALTER TABLE orders ADD COLUMN tag INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE orders ADD COLUMN fp INTEGER NOT NULL DEFAULT 0")
    after: tuple[str, str] = ("", "")
    while True:
        rows = conn.execute(
            "SELECT source, key, state, raw FROM orders WHERE (source, key) > (?, ?) ORDER BY source, key LIMIT 5000",
            after,
        ).fetchall()
        if not rows:
            break
        conn.executemany(
            "UPDATE orders SET tag = ?, fp = ? WHERE source = ? AND key = ?",
            [(tag_of(key), fingerprint(raw.encode(), state), source, key) for source, key, state, raw in rows],
        )
        after = (rows[-1][0], rows[-1][1])
    conn.execute("DROP INDEX orders_digest")
    conn.execute("CREATE INDEX orders_fingerprints ON orders (source, tag, fp)")


def apply(db: Database) -> None:
    """Bring the database up to this version's schema."""
    import sqlite_utils

    try:
        migrations().apply(sqlite_utils.Database(db.conn))
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot open database {db.path}: {exc} (check the path, its permissions and free space)"
        ) from exc

"""The schema, as steps applied in order, once each, each in its own transaction with the record of it.

The record is the ``_sqlite_migrations`` table that sqlite-utils' ``Migrations`` kept for earlier versions (same
table, same set name), so their databases carry on where they were. The runner is ours rather than sqlite-utils':
it takes the write lock before it decides what is pending (two processes opening a new database at once do not
both apply a step), and it refuses a database that a newer orderwatch migrated (``SchemaTooNew``).

A step that rewrites rows works through them in key order a batch at a time, so that memory stays flat.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from orderwatch import clock
from orderwatch.core.fingerprints import fingerprint, tag_of
from orderwatch.core.model import content_hash
from orderwatch.errors import SchemaTooNew, StoreError
from orderwatch.store.db import Database, hint


def _m0001(conn: sqlite3.Connection) -> None:
    _script(
        conn,
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
        """,
    )


def _m0002(conn: sqlite3.Connection) -> None:
    _script(
        conn,
        """
        ALTER TABLE outbox ADD COLUMN title TEXT;
        ALTER TABLE outbox ADD COLUMN body TEXT;
        ALTER TABLE sources ADD COLUMN next_poll_at TEXT;
        """,
    )


def _m0003(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE sources ADD COLUMN baseline_tries INTEGER NOT NULL DEFAULT 0")


def _m0004(conn: sqlite3.Connection) -> None:
    # A full sweep starts by reading every stored (key, state, hash): a covering index reads ~80 bytes a row instead
    # of the whole row with its JSON, twice as fast.
    conn.execute("CREATE INDEX orders_digest ON orders (source, key, state, hash)")
    # Content hashes moved from BLAKE2b to XXH3-128. The stored raw text is the canonical JSON the hash is taken of,
    # so every hash is recomputed exactly here (a batch of keys at a time), and the next sweep rewrites nothing.
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


def _m0005(conn: sqlite3.Connection) -> None:
    # A full sweep starts by reading a fingerprint of every stored order. Kept in the row as two integers (see
    # fingerprints.py), they are read at a third of the cost of hashing each row's key, state and hash text anew.
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


def _m0006(conn: sqlite3.Connection) -> None:
    # A baseline appends every order of an account. Keyed by (source, key), a random UUID each, every batch of it
    # rewrote about one page of the whole table per row, with the JSON inline. Rows now live in a rowid table, in
    # the order they are written, with the JSON last; the (source, key) -> id look-up is a table of its own, so a
    # baseline into an empty source can append its rows first and key them in one sorted pass (see sweep.py).
    # One index serves the state queries and, covering, the fingerprint index's read (its id keeps appends local).
    # The rows are copied in key order, so their ids, and the look-up table's keys, are written in order too.
    _script(
        conn,
        """
        CREATE TABLE orders_new (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            key TEXT NOT NULL,
            raw_state TEXT NOT NULL,
            state TEXT NOT NULL,
            hash TEXT NOT NULL,
            tag INTEGER NOT NULL,
            fp INTEGER NOT NULL,
            first_seen TEXT NOT NULL,
            changed_at TEXT NOT NULL,
            raw TEXT NOT NULL
        );
        INSERT INTO orders_new (source, key, raw_state, state, hash, tag, fp, first_seen, changed_at, raw)
            SELECT source, key, raw_state, state, hash, tag, fp, first_seen, changed_at, raw FROM orders
            ORDER BY source, key;
        DROP TABLE orders;
        ALTER TABLE orders_new RENAME TO orders;
        CREATE TABLE order_keys (
            source TEXT NOT NULL,
            key TEXT NOT NULL,
            id INTEGER NOT NULL,
            PRIMARY KEY (source, key)
        ) WITHOUT ROWID;
        INSERT INTO order_keys (source, key, id) SELECT source, key, id FROM orders ORDER BY id;
        CREATE INDEX orders_by_state ON orders (source, state, id, tag, fp);
        CREATE TABLE unkeyed (source TEXT PRIMARY KEY, after INTEGER NOT NULL);
        """,
    )


def _m0007(conn: sqlite3.Connection) -> None:
    # Incremental polls count the snapshot by raw state and creation time (the server's counts are checked against
    # them), and remember what each server has proven and what a poll could not settle. Creation times are kept
    # in the one sortable text form (clock.iso); existing rows take theirs from the stored JSON (both built-in
    # formats write ``created_at``). One index serves the counts and still covers the fingerprint index's read.
    conn.execute("ALTER TABLE orders ADD COLUMN created TEXT")
    after = 0
    while True:
        rows = conn.execute(
            "SELECT id, json_extract(raw, '$.created_at') FROM orders WHERE id > ? ORDER BY id LIMIT 5000", (after,)
        ).fetchall()
        if not rows:
            break
        conn.executemany("UPDATE orders SET created = ? WHERE id = ?", [(clock.iso(c), i) for i, c in rows])
        after = rows[-1][0]
    _script(
        conn,
        """
        DROP INDEX orders_by_state;
        CREATE INDEX orders_by_raw_state ON orders (source, raw_state, created, id, tag, fp);
        ALTER TABLE sources ADD COLUMN full_due TEXT;
        CREATE TABLE capabilities (
            source TEXT NOT NULL,
            name TEXT NOT NULL,
            ok INTEGER NOT NULL,
            note TEXT NOT NULL,
            learned_at TEXT NOT NULL,
            PRIMARY KEY (source, name)
        ) WITHOUT ROWID;
        """,
    )


def _m0009(conn: sqlite3.Connection) -> None:
    # Notification policies (silences.py, summaries.py, policies.py): an outbox row may be "silenced" (a status the
    # old CHECK refused, so the table is rebuilt from its own stored definition, keeping every column a step before
    # this one added), may wait for a reason ("quiet": until next_attempt_at), and names the silence that stopped it.
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
    old = "CHECK (status IN ('pending', 'sent', 'failed'))"
    if old not in sql:
        raise StoreError("cannot migrate the outbox: its status check is not the one this step expects")
    new = sql.replace(old, "CHECK (status IN ('pending', 'sent', 'failed', 'silenced'))", 1)
    new = new.replace("CREATE TABLE outbox", "CREATE TABLE outbox_new", 1)
    columns = ", ".join(f'"{row[1]}"' for row in conn.execute("PRAGMA table_info(outbox)"))
    indexes = [s for (s,) in conn.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'outbox' AND type = 'index'")]
    conn.execute(new)
    conn.execute(f"INSERT INTO outbox_new ({columns}) SELECT {columns} FROM outbox ORDER BY id")
    conn.execute("DROP TABLE outbox")
    conn.execute("ALTER TABLE outbox_new RENAME TO outbox")
    for index in indexes:
        if index:
            conn.execute(index)
    _script(
        conn,
        """
        ALTER TABLE outbox ADD COLUMN hold TEXT;
        ALTER TABLE outbox ADD COLUMN silenced_by INTEGER;
        CREATE TABLE silences (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            order_id TEXT,
            rule TEXT,
            comment TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            ends_at TEXT NOT NULL,
            expired_at TEXT,
            end_logged INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX silences_by_end ON silences (end_logged, ends_at);
        CREATE TABLE silenced_events (
            event_id INTEGER NOT NULL,
            channel TEXT NOT NULL,
            silence_id INTEGER NOT NULL,
            PRIMARY KEY (event_id, channel)
        ) WITHOUT ROWID;
        CREATE TABLE summary_runs (
            summary TEXT NOT NULL,
            period TEXT NOT NULL,
            outbox_id INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (summary, period)
        ) WITHOUT ROWID;
        """,
    )


def _m0010(conn: sqlite3.Connection) -> None:
    # The page size a server really gives (its silent cap), as the last complete full sweep saw it: incremental
    # plans are costed in the server's pages, not in the page size asked.
    conn.execute("ALTER TABLE sources ADD COLUMN served_page INTEGER")


Step = Callable[[sqlite3.Connection], None]
STEPS: tuple[tuple[str, Step], ...] = (
    ("0001_initial", _m0001),
    ("0002_notices_and_schedule", _m0002),
    ("0003_baseline_tries", _m0003),
    ("0004_fast_sweeps", _m0004),
    ("0005_fingerprints", _m0005),
    ("0006_rowid_orders", _m0006),
    ("0007_counts_and_capabilities", _m0007),
    ("0009_policies", _m0009),
    ("0010_served_page", _m0010),
)
_SET = "orderwatch"


def applied(conn: sqlite3.Connection) -> list[str]:
    """The names of the steps applied to the database, in the order they were applied."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlite_migrations'").fetchone():
        rows = conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY id", (_SET,))
        return [name for (name,) in rows]
    return []


def check(db: Database) -> list[str]:
    """The steps still to apply; ``SchemaTooNew`` when the database has one this version does not know."""
    with db.guard() as conn:
        done = applied(conn)
    known = {name for name, _ in STEPS}
    unknown = [name for name in done if name not in known]
    if unknown:
        raise SchemaTooNew(str(db.path), unknown)
    return [name for name, _ in STEPS if name not in done]


def apply(db: Database, *, stop_before: str | None = None) -> None:
    """Bring the database up to this version's schema (``stop_before``: leave that step and the later ones)."""
    if not check(db):
        return
    for name, step in STEPS:
        if name == stop_before:
            return
        with _transaction(db) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _sqlite_migrations"
                " (id INTEGER PRIMARY KEY, migration_set TEXT, name TEXT, applied_at TEXT)"
            )
            conn.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS idx__sqlite_migrations_migration_set_name"
                " ON _sqlite_migrations (migration_set, name)"
            )
            if name in applied(conn):  # another process applied it since check()
                continue
            step(conn)
            conn.execute(
                "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
                (_SET, name, str(datetime.now(UTC))),
            )


@contextmanager
def _transaction(db: Database) -> Iterator[sqlite3.Connection]:
    """One step's write transaction; its errors say the database could not be opened."""
    with db.lock:
        conn = db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open database {db.path}: {exc}{hint(exc)} (check the path, its permissions and free space)"
            ) from exc


def _script(conn: sqlite3.Connection, sql: str) -> None:
    """Run statements separated by ``;`` one by one (``executescript`` would commit the step's transaction)."""
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)

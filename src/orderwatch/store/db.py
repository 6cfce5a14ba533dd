"""The database connection: opening the file, one write transaction at a time, and SQLite's errors as
``StoreError`` with a hint of what to check.

One connection per ``Database``, shared by worker threads and serialised with a lock (re-entrant: a write
transaction calls helpers that take it again).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orderwatch.errors import StoreError


class Database:
    """One SQLite connection and the lock that serialises its use."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.lock = threading.RLock()

    @classmethod
    def connect(cls, path: Path, *, readonly: bool, timeout: float) -> Database:
        """A connection to the database at ``path`` (created, owner-only, unless ``readonly``), not yet migrated."""
        try:
            if readonly:
                if not path.exists():
                    raise StoreError(f"no database at {path} yet: run `orderwatch poll` or `orderwatch run` first")
                conn = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    timeout=timeout,
                    check_same_thread=False,
                    isolation_level=None,
                )
            else:
                if str(path) != ":memory:" and not path.exists():
                    _create_private(path)
                conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only on a database not yet written
                _wal(conn, timeout)
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open database {path}: {exc} (check the path, its permissions and free space)"
            ) from exc
        return cls(conn, path)

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so it cannot deadlock on upgrade."""
        with self.lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite may already have rolled back (SQLITE_FULL, SQLITE_IOERR...): never mask the cause
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"database {self.path}: {exc}{hint(exc)}") from exc

    @contextmanager
    def guard(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, outside any transaction; its errors become ``StoreError``."""
        with self.lock:
            try:
                yield self.conn
            except sqlite3.Error as exc:
                raise StoreError(f"database {self.path}: {exc}") from exc

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one query, as tuples."""
        with self.guard() as conn:
            return conn.execute(sql, params).fetchall()

    def read_named(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """All rows of one query, addressed by column name."""
        with self.guard() as conn:
            return named(conn, sql, params)


def named(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    """All rows of one query on ``conn``, addressed by column name (the connection's own rows stay tuples)."""
    cur = conn.cursor()
    cur.row_factory = sqlite3.Row
    return cur.execute(sql, params).fetchall()


def marks(n: int) -> str:
    """``n`` SQL parameter marks for an ``IN (...)`` list."""
    return ",".join("?" * n)


def hint(exc: sqlite3.Error) -> str:
    """What to check for a failed write."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return " (another process holds a write lock for too long: is a second daemon running?)"
    if "full" in text:
        return " (free some disk space; nothing was recorded, the next poll retries)"
    if "readonly" in text or "read-only" in text:
        return " (the file or its folder is read-only for this user)"
    return ""


# A new database's page size. A baseline writes every row twice (to the WAL, then into the database), a page a
# system call: at SQLite's 4 KiB default that was half a million calls for 100k orders, most of a baseline's store
# time. A database created by an earlier version keeps its page size (WAL mode cannot change it).
PAGE_SIZE = 16384


def _create_private(path: Path) -> None:
    """Create ``path`` (and the SQLite side files' future siblings) readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)


def _wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch ``conn``'s database to WAL. Switching a new file needs a lock that SQLite does not wait for (busy at
    once, the busy timeout notwithstanding) while another process opens the same file: retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)

"""A full sweep as the store follows it: the keys it has seen, and, when it is the first sweep of an empty source
(a baseline), the rows it appends in bulk.

Seen keys are kept in a set until there are many (an exact sweep of a big list), then in a temporary table, so
memory stays flat.

A baseline in bulk appends its rows to ``orders`` as they come, in list order, without their ``order_keys`` entry
and without looking anything up: the source has no row, and a baseline makes no event, so there is nothing to
compare a row with. Keying a random key per row would rewrite about one page of the look-up per row; instead
``key_unkeyed`` keys them all in one pass in key order when the sweep has all its pages. An order met twice (pushed
down a page by a new one) is appended twice; that pass keys its last sighting and drops the others, and the number
of rows it keys is the number of distinct orders the sweep saw. Until then the source's row in ``unkeyed`` says that
rows after an id may lack their entry: any writer keys them before it writes to the source, and a store keys them
when it opens, so a sweep that died half-way leaves nothing behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from orderwatch.core.model import Known
from orderwatch.store import snapshot

SPILL = 20_000  # seen keys kept in memory before they go to the temporary table
# One order of a baseline as its row is appended (``snapshot.append_unnumbered``): source, key, raw_state, state,
# hash, tag, fp, created, first_seen, changed_at, raw (its canonical JSON as text)
BulkRow = tuple[str, str, str, str, str, int, int, str | None, str, str, str]


class BulkRows:
    """The rows one baseline sweep appends unkeyed."""

    def __init__(self) -> None:
        self.after: int | None = None  # rows of the source after this id may be unkeyed
        self.appended = 0
        self.keyed_by_others = False  # another store keyed some of the rows (they are no longer in the count)
        self.listed = True  # temp.bulk_keys lists every row appended, and only those

    def key(self, conn: sqlite3.Connection, source: str) -> int:
        """Key the rows appended (inside a write transaction); returns how many distinct orders they hold."""
        if self.after is None:
            return 0
        if not unkeyed(conn, source):  # another store keyed them all since the last append
            self.keyed_by_others = True
        if self.listed and not self.keyed_by_others:
            # their keys and ids, listed as they were appended: a few MB to sort, not the rows with their JSON
            keyed: int = conn.execute(
                "INSERT OR IGNORE INTO order_keys (source, key, id)"
                " SELECT source, key, id FROM temp.bulk_keys WHERE source = ? ORDER BY key, id DESC",
                (source,),
            ).rowcount
            if keyed != self.appended:
                drop_unkeyed(conn, source, self.after)
            conn.execute("DELETE FROM unkeyed WHERE source = ?", (source,))
            return keyed
        keyed = key_unkeyed(conn, source, self.after, self.appended)
        if not self.keyed_by_others:
            return keyed
        # those keyed by another store are not in ``keyed``: count them all, now that every one is keyed
        (count,) = conn.execute(
            "SELECT count(*) FROM orders WHERE source = ? AND id > ?", (source, self.after)
        ).fetchone()
        return int(count)

    def append(self, conn: sqlite3.Connection, source: str, rows: Sequence[BulkRow]) -> bool:
        """Append ``rows`` (inside a write transaction); False, with nothing appended and the rows this sweep
        appended before dropped, when another writer has taken the source's baseline meanwhile: once a source has
        its baseline, a row without an event must not add an order (see ``snapshot``)."""
        if self.after is None:
            self.after = snapshot.next_id(conn) - 1
        elif not unkeyed(conn, source):
            self.keyed_by_others = True
        if snapshot.baselined(conn, source):
            drop_unkeyed(conn, source, self.after)
            return False
        # (again each time: a writer that keyed this sweep's rows so far has removed it)
        conn.execute(
            "INSERT INTO unkeyed (source, after) VALUES (?, ?)"
            " ON CONFLICT (source) DO UPDATE SET after = min(after, excluded.after)",
            (source, self.after),
        )
        first = snapshot.next_id(conn)
        snapshot.append_unnumbered(conn, rows)
        # the rows from ``first`` on are the ones just appended (this transaction holds the write lock); by id
        # alone, or SQLite reads the source's whole state index for them, every batch
        conn.execute(
            "INSERT INTO temp.bulk_keys (source, key, id) SELECT source, key, id FROM orders WHERE id >= ?", (first,)
        )
        self.appended += len(rows)
        return True


def key_unkeyed(conn: sqlite3.Connection, source: str, after: int, expected: int | None = None) -> int:
    """Give every row of ``source`` after id ``after`` its ``order_keys`` entry, in key order (inside a write
    transaction); returns how many it keyed. Of the rows of one key, the last written is keyed and the others are
    dropped; a row whose key another writer has stored meanwhile is dropped too: the keyed row stays. ``expected``:
    how many rows were appended, when known (then the check for such rows is skipped if all were keyed)."""
    keyed: int = conn.execute(
        "INSERT OR IGNORE INTO order_keys (source, key, id)"
        " SELECT source, key, id FROM orders WHERE id > ? AND source = ? ORDER BY key, id DESC",
        (after, source),
    ).rowcount
    if expected is None or keyed != expected:
        drop_unkeyed(conn, source, after)
    conn.execute("DELETE FROM unkeyed WHERE source = ?", (source,))
    return keyed


def drop_unkeyed(conn: sqlite3.Connection, source: str, after: int) -> None:
    """Delete the rows of ``source`` after id ``after`` that have no ``order_keys`` entry (inside a transaction)."""
    conn.execute(
        "DELETE FROM orders WHERE id > ? AND source = ? AND NOT EXISTS"
        " (SELECT 1 FROM order_keys k WHERE k.source = orders.source AND k.key = orders.key AND k.id = orders.id)",
        (after, source),
    )


def unkeyed(conn: sqlite3.Connection, source: str | None = None) -> dict[str, int]:
    """Sources that may have unkeyed rows, and the id after which they may be."""
    sql = "SELECT source, after FROM unkeyed" + (" WHERE source = ?" if source is not None else "")
    return dict(conn.execute(sql, (source,) if source is not None else ()).fetchall())


class Sweep:
    """One full sweep of a source, from ``Store.seen_begin`` to ``Store.seen_end``."""

    def __init__(self, conn: sqlite3.Connection, source: str, *, bulk: bool) -> None:
        self.source = source
        self.bulk = BulkRows() if bulk else None
        self._pending: set[str] = set()  # seen keys (before they spill to temp.seen)
        self._spilled = False
        # No rollback journal for temporary tables: the seen-keys table is scratch, and journaling its reused
        # pages at every page's insert made a sweep ~6x slower.
        conn.execute("PRAGMA temp.journal_mode=OFF")
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS seen (source TEXT, key TEXT, PRIMARY KEY (source, key)) WITHOUT ROWID"
        )
        conn.execute("DELETE FROM temp.seen WHERE source = ?", (source,))
        # the keys and ids of a bulk baseline's rows, as appended (see ``BulkRows.key``)
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS bulk_keys (source TEXT, key TEXT, id INTEGER)")
        conn.execute("DELETE FROM temp.bulk_keys WHERE source = ?", (source,))

    def add(self, conn: sqlite3.Connection, keys: Sequence[str]) -> int:
        """Note keys the sweep saw; returns how many it had not seen before."""
        fresh = list(dict.fromkeys(keys))
        if self._spilled:
            return conn.executemany(
                "INSERT OR IGNORE INTO temp.seen (source, key) VALUES (?, ?)", [(self.source, k) for k in fresh]
            ).rowcount
        new = [k for k in fresh if k not in self._pending]
        self._pending.update(new)
        if len(self._pending) > SPILL:
            conn.executemany(
                "INSERT OR IGNORE INTO temp.seen (source, key) VALUES (?, ?)",
                [(self.source, k) for k in sorted(self._pending)],
            )
            self._pending = set()
            self._spilled = True
        return len(new)

    def unseen(self, conn: sqlite3.Connection, seen: Callable[[str], bool] | None) -> dict[str, Known]:
        """The stored orders of the source that the sweep did not see (nor ``seen`` by the caller)."""
        found: dict[str, Known] = {}
        sql = "SELECT key, raw_state, state, hash FROM orders o WHERE source = ?"
        if self._spilled:
            sql += " AND NOT EXISTS (SELECT 1 FROM temp.seen s WHERE s.source = o.source AND s.key = o.key)"
        pending = self._pending
        for key, raw_state, state, digest in conn.execute(sql, (self.source,)):  # row by row
            if key in pending or (seen is not None and seen(key)):
                continue
            found[key] = Known(raw_state, state, digest)
        return found

    def end(self, conn: sqlite3.Connection) -> None:
        """Forget the sweep's seen keys."""
        conn.execute("DELETE FROM temp.seen WHERE source = ?", (self.source,))
        conn.execute("DELETE FROM temp.bulk_keys WHERE source = ?", (self.source,))

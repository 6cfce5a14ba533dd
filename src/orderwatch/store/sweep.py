"""A full sweep as the store follows it: the keys it has seen, and, when it is the first sweep of an empty source
(a baseline), the rows it appends in bulk.

Seen keys are kept in a set until there are many (an exact sweep of a big list), then in a temporary table, so
memory stays flat. A baseline's rows are appended to ``orders`` without their ``order_keys`` entry: keying a
random key per row made every write batch rewrite about one page of the look-up per row. The sweep remembers
where each of its rows went (``BulkRows``, two flat arrays keyed by the key's tag), which answers its own
look-ups, and ``key_unkeyed`` keys them all in one pass in key order when the sweep ends. Until then the source's
row in ``unkeyed`` says that rows after an id may lack their entry: any writer keys them before it writes to the
source, and a store keys them when it opens, so a sweep that died half-way leaves nothing behind.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Callable, Iterable, Sequence

import xxhash

from orderwatch.core.fingerprints import fingerprint, tag_of
from orderwatch.core.model import Known, Order
from orderwatch.store import snapshot
from orderwatch.store.db import marks

SPILL = 20_000  # seen keys kept in memory before they go to the temporary table
_BITS = (1 << 63) - 1
_h64 = xxhash.xxh3_64_intdigest  # tag_of, inlined in BulkRows._candidates


class BulkRows:
    """The rows one baseline sweep appended unkeyed: key -> id, exact (a tag shared by two keys is told apart)."""

    def __init__(self) -> None:
        self.after: int | None = None  # rows of the source after this id may be unkeyed
        self.size = 0
        self._mask = 1023
        self._tags = array("q", bytes(8 * 1024))  # 0: an empty slot (tags are never 0)
        self._ids = array("q", bytes(8 * 1024))
        self._other: dict[str, int] = {}  # keys whose tag's slot another key took first

    def _put(self, key: str, tag: int, row_id: int) -> None:
        tags, mask = self._tags, self._mask
        i = tag & mask
        while (t := tags[i]) != 0 and t != tag:
            i = (i + 1) & mask
        if t == 0:
            tags[i], self._ids[i] = tag, row_id
        else:
            self._other[key] = row_id  # another key of the sweep has this tag
        self.size += 1
        if self.size * 2 > mask:
            self._grow()

    def _grow(self) -> None:
        old = zip(self._tags, self._ids, strict=True)
        self._mask = mask = 2 * self._mask + 1
        self._tags = tags = array("q", bytes(8 * (mask + 1)))
        self._ids = ids = array("q", bytes(8 * (mask + 1)))
        for tag, row_id in old:
            if tag:
                i = tag & mask
                while tags[i] != 0:
                    i = (i + 1) & mask
                tags[i], ids[i] = tag, row_id

    def _candidates(self, keys: Iterable[str]) -> dict[int, str]:
        """id -> key for the keys this sweep may have written (a tag's slot may hold another key's id: unverified).
        Asked of every key of a baseline three times, so it is one loop over locals."""
        tags, ids, mask, other = self._tags, self._ids, self._mask, self._other
        found: dict[int, str] = {}
        for key in keys:
            if other and (row_id := other.get(key)) is not None:
                found[row_id] = key
                continue
            tag = (_h64(key.encode()) & _BITS) or 1
            i = tag & mask
            while (t := tags[i]) != 0:
                if t == tag:
                    found[ids[i]] = key
                    break
                i = (i + 1) & mask
        return found

    def wrote(self, row_id: int, key: str) -> bool:
        """True when the stored row ``row_id`` of ``key`` is one this sweep wrote."""
        return self._candidates((key,)).get(row_id) == key

    def rows(self, conn: sqlite3.Connection, keys: Iterable[str]) -> dict[str, tuple[snapshot.Stored, str]]:
        """The rows this sweep wrote for these keys: stored row and content hash, checked against the database."""
        wanted = self._candidates(keys)
        found: dict[str, tuple[snapshot.Stored, str]] = {}
        ids = list(wanted)
        for i in range(0, len(ids), snapshot.CHUNK):
            chunk = ids[i : i + snapshot.CHUNK]
            for row_id, key, raw_state, state, digest in conn.execute(
                f"SELECT id, key, raw_state, state, hash FROM orders WHERE id IN ({marks(len(chunk))})", chunk
            ):
                if wanted[row_id] == key:
                    found[key] = (snapshot.Stored(row_id, raw_state, state), digest)
        return found

    def known(self, conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, Known]:
        """What the sweep wrote of these orders."""
        return {k: Known(row.raw_state, row.state, digest) for k, (row, digest) in self.rows(conn, keys).items()}

    def write(self, conn: sqlite3.Connection, source: str, orders: Sequence[Order], now: str) -> snapshot.Written:
        """Append (or rewrite, for a key written before) ``orders``, unkeyed; the same rules as ``snapshot.write``."""
        done = snapshot.Written()
        latest = {o.key: o for o in orders}
        have = {k: row for k, (row, _) in self.rows(conn, latest).items()}
        guarded = snapshot.baselined(conn, source)  # all of a baseline's rows are silent
        new_id = snapshot.next_id(conn)
        if self.after is None:
            self.after = new_id - 1
        # (again each time: a writer that keyed this sweep's rows so far has removed it)
        conn.execute(
            "INSERT INTO unkeyed (source, after) VALUES (?, ?)"
            " ON CONFLICT (source) DO UPDATE SET after = min(after, excluded.after)",
            (source, self.after),
        )
        updates: list[tuple[object, ...]] = []
        inserts: list[tuple[object, ...]] = []
        added: list[tuple[str, int, int]] = []
        for key, o in latest.items():
            fp = fingerprint(o.raw_json, o.state)
            tag = tag_of(key)
            row = have.get(key)
            if row is not None:
                if guarded and row.state != o.state:
                    continue
                updates.append((o.raw_state, o.state, o.digest, fp, o.created, now, o.raw_json.decode(), row.id))
            elif guarded:
                continue
            else:
                inserts.append(
                    (
                        new_id,
                        source,
                        key,
                        o.raw_state,
                        o.state,
                        o.digest,
                        tag,
                        fp,
                        o.created,
                        now,
                        now,
                        o.raw_json.decode(),
                    )
                )
                added.append((key, tag, new_id))
                new_id += 1
            done.prints.append((tag, fp))
        if updates:
            conn.executemany(snapshot.UPDATE, updates)
        if inserts:
            snapshot.append(conn, inserts)
            for key, tag, row_id in added:
                self._put(key, tag, row_id)
        done.added = [key for key, _, _ in added]
        return done


def key_unkeyed(conn: sqlite3.Connection, source: str, after: int, expected: int | None = None) -> None:
    """Give every row of ``source`` after id ``after`` its ``order_keys`` entry, in key order (inside a write
    transaction). A row whose key another writer has stored meanwhile is dropped: the keyed row stays. ``expected``:
    how many rows the sweep appended, when known (then the check for such rows is skipped if all were keyed)."""
    keyed = conn.execute(
        "INSERT OR IGNORE INTO order_keys (source, key, id)"
        " SELECT source, key, id FROM orders WHERE id > ? AND source = ? ORDER BY key",
        (after, source),
    ).rowcount
    if expected is None or keyed != expected:
        conn.execute(
            "DELETE FROM orders WHERE id > ? AND source = ? AND NOT EXISTS"
            " (SELECT 1 FROM order_keys k WHERE k.source = orders.source AND k.key = orders.key AND k.id = orders.id)",
            (after, source),
        )
    conn.execute("DELETE FROM unkeyed WHERE source = ?", (source,))


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

    def add(self, conn: sqlite3.Connection, keys: Sequence[str]) -> int:
        """Note keys the sweep saw; returns how many it had not seen before."""
        fresh = list(dict.fromkeys(keys))
        if self.bulk is not None:
            wrote = self.bulk.rows(conn, fresh)
            fresh = [k for k in fresh if k not in wrote]
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

    def wrote(self, keys: Iterable[str]) -> None:
        """These seen keys' rows were appended in bulk: the bulk rows remember them now."""
        if not self._spilled:
            self._pending.difference_update(keys)

    def unseen(self, conn: sqlite3.Connection, seen: Callable[[str], bool] | None) -> dict[str, Known]:
        """The stored orders of the source that the sweep did not see (nor ``seen`` by the caller)."""
        found: dict[str, Known] = {}
        sql = "SELECT id, key, raw_state, state, hash FROM orders o WHERE source = ?"
        if self._spilled:
            sql += " AND NOT EXISTS (SELECT 1 FROM temp.seen s WHERE s.source = o.source AND s.key = o.key)"
        bulk, pending = self.bulk, self._pending
        for row_id, key, raw_state, state, digest in conn.execute(sql, (self.source,)):  # row by row
            if key in pending or (bulk is not None and bulk.wrote(row_id, key)) or (seen is not None and seen(key)):
                continue
            found[key] = Known(raw_state, state, digest)
        return found

    def end(self, conn: sqlite3.Connection) -> None:
        """Forget the sweep's seen keys."""
        conn.execute("DELETE FROM temp.seen WHERE source = ?", (self.source,))

"""The per-source snapshot: what is known of each order (``Known``), the rows written and removed, and the keys a
full sweep has seen (a temporary table: memory does not grow with the list)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from orderwatch.fingerprints import fingerprint, tag_of
from orderwatch.model import Known, Order
from orderwatch.store.db import marks, named
from orderwatch.store.rows import ORDER_COLUMNS, OrderRow, order_row

CHUNK = 500  # keys per IN (...) query


def known(conn: sqlite3.Connection, source: str, keys: Sequence[str]) -> dict[str, Known]:
    """What the snapshot knows of these orders of ``source`` (those it has)."""
    found: dict[str, Known] = {}
    for i in range(0, len(keys), CHUNK):
        chunk = keys[i : i + CHUNK]
        rows = conn.execute(
            f"SELECT key, raw_state, state, hash FROM orders WHERE source = ? AND key IN ({marks(len(chunk))})",
            [source, *chunk],
        )
        found.update({key: Known(raw_state, state, digest) for key, raw_state, state, digest in rows})
    return found


def everything(conn: sqlite3.Connection, source: str) -> dict[str, Known]:
    """What the snapshot knows of every order of ``source``."""
    rows = conn.execute("SELECT key, raw_state, state, hash FROM orders WHERE source = ?", (source,))
    return {key: Known(raw_state, state, digest) for key, raw_state, state, digest in rows}


def in_states(conn: sqlite3.Connection, source: str, states: Sequence[str]) -> dict[str, Known]:
    """The snapshot's orders of ``source`` whose canonical state is one of ``states``."""
    if not states:
        return {}
    rows = conn.execute(
        f"SELECT key, raw_state, state, hash FROM orders WHERE source = ? AND state IN ({marks(len(states))})",
        [source, *states],
    )
    return {key: Known(raw_state, state, digest) for key, raw_state, state, digest in rows}


def stored_states(conn: sqlite3.Connection, source: str) -> list[str]:
    """The distinct canonical states of the stored orders of ``source`` (one index probe per state)."""
    found: list[str] = []
    while True:
        row = conn.execute(
            "SELECT min(state) FROM orders WHERE source = ? AND state > ?", (source, found[-1] if found else "")
        ).fetchone()
        if row[0] is None:
            return found
        found.append(row[0])


def created_at(conn: sqlite3.Connection, source: str, keys: Sequence[str]) -> dict[str, str]:
    """The stored ``created_at`` of these orders (those that have one)."""
    found: dict[str, str] = {}
    for i in range(0, len(keys), CHUNK):
        chunk = list(keys[i : i + CHUNK])
        rows = conn.execute(
            "SELECT key, json_extract(raw, '$.created_at') FROM orders WHERE source = ?"
            f" AND key IN ({marks(len(chunk))})",
            [source, *chunk],
        )
        found.update({k: v for k, v in rows if isinstance(v, str)})
    return found


def upsert(conn: sqlite3.Connection, source: str, orders: Sequence[Order], now: str) -> list[tuple[int, int]]:
    """Insert or update ``orders``; returns the (tag, fingerprint) written for each."""
    if not orders:
        return []
    prints = [(tag_of(o.key), fingerprint(o.raw_json, o.state)) for o in orders]
    conn.executemany(
        "INSERT INTO orders (source, key, raw_state, state, hash, raw, first_seen, changed_at, tag, fp)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (source, key) DO UPDATE SET raw_state = excluded.raw_state,"
        " state = excluded.state, hash = excluded.hash, raw = excluded.raw,"
        " changed_at = excluded.changed_at, fp = excluded.fp",
        [
            (source, o.key, o.raw_state, o.state, o.digest, o.raw_json.decode(), now, now, tag, fp)
            for o, (tag, fp) in zip(orders, prints, strict=True)
        ],
    )
    return prints


def remove(conn: sqlite3.Connection, source: str, keys: Sequence[str]) -> dict[str, str]:
    """Delete these orders of ``source``; returns the last stored JSON of each (``{}`` when it was not stored)."""
    last: dict[str, str] = {}
    for key in keys:
        row = conn.execute("SELECT raw FROM orders WHERE source = ? AND key = ?", (source, key)).fetchone()
        last[key] = row[0] if row else "{}"
    conn.executemany("DELETE FROM orders WHERE source = ? AND key = ?", [(source, k) for k in keys])
    return last


def count(conn: sqlite3.Connection, source: str) -> int:
    """How many orders of ``source`` are stored."""
    return int(conn.execute("SELECT count(*) FROM orders WHERE source = ?", (source,)).fetchone()[0])


def seen_begin(conn: sqlite3.Connection, source: str) -> None:
    """Start tracking the keys a sweep of ``source`` sees."""
    # No rollback journal for temporary tables: the seen-keys table is scratch, and journaling its reused pages at
    # every page's insert made a sweep ~6x slower.
    conn.execute("PRAGMA temp.journal_mode=OFF")
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS seen (source TEXT, key TEXT, PRIMARY KEY (source, key)) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM temp.seen WHERE source = ?", (source,))


def seen_add(conn: sqlite3.Connection, source: str, keys: Sequence[str]) -> int:
    """Note keys seen by the sweep; returns how many had not been seen before in it."""
    cur = conn.executemany("INSERT OR IGNORE INTO temp.seen (source, key) VALUES (?, ?)", [(source, k) for k in keys])
    return cur.rowcount


def unseen(conn: sqlite3.Connection, source: str, seen: Callable[[str], bool] | None) -> dict[str, Known]:
    """The snapshot's orders of ``source`` that the sweep did not see: neither in the seen-keys table nor ``seen``
    by the caller."""
    found: dict[str, Known] = {}
    rows = conn.execute(
        "SELECT key, raw_state, state, hash FROM orders o WHERE source = ?"
        " AND NOT EXISTS (SELECT 1 FROM temp.seen s WHERE s.source = o.source AND s.key = o.key)",
        (source,),
    )
    for key, raw_state, state, digest in rows:  # row by row: most of a big account may be listed here
        if seen is None or not seen(key):
            found[key] = Known(raw_state, state, digest)
    return found


def seen_end(conn: sqlite3.Connection, source: str) -> None:
    """Forget the keys of the sweep of ``source``."""
    conn.execute("DELETE FROM temp.seen WHERE source = ?", (source,))


def listing(conn: sqlite3.Connection, source: str | None, state: str | None) -> list[OrderRow]:
    """The snapshot's rows (of ``source``, in ``state`` case-insensitively), newest change first."""
    where, params = [], []
    if source is not None:
        where.append("source = ?")
        params.append(source)
    if state is not None:
        where.append("lower(state) = lower(?)")
        params.append(state)
    sql = f"SELECT {ORDER_COLUMNS} FROM orders" + (" WHERE " + " AND ".join(where) if where else "")
    return [order_row(r) for r in named(conn, sql + " ORDER BY changed_at DESC, source, key", params)]

"""The per-source snapshot: what is known of each order (``Known``), and the rows written and removed.

An order is one row of ``orders`` (a rowid table, the JSON last) and one entry of ``order_keys``, its
``(source, key) -> id`` look-up. Rows appended by a baseline in bulk wait for their entry until the sweep has all
its pages (``sweep.py``); every look-up here goes through ``order_keys``.

Once a source has its baseline, a write that carries no event never changes whether an order is stored, nor its
state: such a write comes from a sweep that another writer has overtaken (two polls of one source at once), and
letting it through would undo what that writer recorded and make it record the same change again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

from orderwatch.core.fingerprints import fingerprint, tag_of
from orderwatch.core.model import Known, Order
from orderwatch.store.db import marks, named
from orderwatch.store.rows import ORDER_COLUMNS, OrderRow, order_row

CHUNK = 500  # keys per IN (...) query


def known(conn: sqlite3.Connection, source: str, keys: Sequence[str]) -> dict[str, Known]:
    """What the snapshot knows of these orders of ``source`` (those it has)."""
    found: dict[str, Known] = {}
    for i in range(0, len(keys), CHUNK):
        chunk = keys[i : i + CHUNK]
        rows = conn.execute(
            "SELECT k.key, o.raw_state, o.state, o.hash FROM order_keys k JOIN orders o ON o.id = k.id"
            f" WHERE k.source = ? AND k.key IN ({marks(len(chunk))})",
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
    """The distinct canonical states of the stored orders of ``source`` (a raw state maps to one canonical state
    at a time, so the distinct raw states, one index probe each, name them all)."""
    found: list[str] = []
    raw = ""
    while True:
        row = conn.execute(
            "SELECT raw_state, state FROM orders WHERE source = ? AND raw_state > ? ORDER BY raw_state LIMIT 1",
            (source, raw),
        ).fetchone()
        if row is None:
            return sorted(set(found))
        raw = row[0]
        found += [
            s
            for (s,) in conn.execute(
                "SELECT DISTINCT state FROM orders WHERE source = ? AND raw_state = ?", (source, raw)
            )
        ]


def created_at(conn: sqlite3.Connection, source: str, keys: Sequence[str]) -> dict[str, str]:
    """The stored ``created_at`` of these orders (those that have one)."""
    found: dict[str, str] = {}
    for i in range(0, len(keys), CHUNK):
        chunk = list(keys[i : i + CHUNK])
        rows = conn.execute(
            "SELECT k.key, json_extract(o.raw, '$.created_at') FROM order_keys k JOIN orders o ON o.id = k.id"
            f" WHERE k.source = ? AND k.key IN ({marks(len(chunk))})",
            [source, *chunk],
        )
        found.update({k: v for k, v in rows if isinstance(v, str)})
    return found


def count(conn: sqlite3.Connection, source: str) -> int:
    """How many orders of ``source`` are stored."""
    return int(conn.execute("SELECT count(*) FROM orders WHERE source = ?", (source,)).fetchone()[0])


def baselined(conn: sqlite3.Connection, source: str) -> bool:
    """True when ``source`` has its baseline."""
    row = conn.execute("SELECT baseline_at FROM sources WHERE name = ?", (source,)).fetchone()
    return row is not None and row[0] is not None


@dataclass(slots=True)
class Written:
    """What a write did: the (tag, fingerprint) of each row written, and the keys it added."""

    prints: list[tuple[int, int]] = field(default_factory=list)
    added: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Stored:
    """An order's row as stored: its id and states."""

    id: int
    raw_state: str
    state: str


def stored(conn: sqlite3.Connection, source: str, keys: Sequence[str]) -> dict[str, Stored]:
    """The stored rows of these orders of ``source`` (those it has)."""
    found: dict[str, Stored] = {}
    for i in range(0, len(keys), CHUNK):
        chunk = keys[i : i + CHUNK]
        rows = conn.execute(
            "SELECT k.key, o.id, o.raw_state, o.state FROM order_keys k JOIN orders o ON o.id = k.id"
            f" WHERE k.source = ? AND k.key IN ({marks(len(chunk))})",
            [source, *chunk],
        )
        found.update({key: Stored(row_id, raw_state, state) for key, row_id, raw_state, state in rows})
    return found


def next_id(conn: sqlite3.Connection) -> int:
    """The id the next appended row takes (inside a write transaction, so no other writer takes it)."""
    return int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM orders").fetchone()[0])


def write(
    conn: sqlite3.Connection,
    source: str,
    orders: Sequence[Order],
    now: str,
    *,
    silent: bool,
    rows: dict[str, Stored] | None = None,
) -> Written:
    """Insert or update ``orders`` (the last of a key wins), keyed. ``silent``: they carry no event, so once the
    source has its baseline none is added and none changes state. ``rows``: their stored rows, when the caller has
    read them in this transaction."""
    done = Written()
    latest = {o.key: o for o in orders}
    if not latest:
        return done
    have = rows if rows is not None else stored(conn, source, list(latest))
    guarded = silent and baselined(conn, source)
    updates: list[tuple[object, ...]] = []
    inserts: list[tuple[object, ...]] = []
    new_id = next_id(conn)
    for key, o in latest.items():
        fp = fingerprint(o.raw_json, o.state)
        row = have.get(key)
        if row is not None:
            if guarded and row.state != o.state:
                continue
            updates.append((o.raw_state, o.state, o.digest, fp, o.created, now, o.raw_json.decode(), row.id))
        elif guarded:
            continue
        else:
            raw = o.raw_json.decode()
            inserts.append(
                (new_id, source, key, o.raw_state, o.state, o.digest, tag_of(key), fp, o.created, now, now, raw)
            )
            new_id += 1
            done.added.append(key)
        done.prints.append((tag_of(key), fp))
    if updates:
        conn.executemany(UPDATE, updates)
    if inserts:
        append(conn, inserts)
        conn.executemany(
            "INSERT INTO order_keys (source, key, id) VALUES (?, ?, ?)", [(r[1], r[2], r[0]) for r in inserts]
        )
    return done


UPDATE = (
    "UPDATE orders SET raw_state = ?, state = ?, hash = ?, fp = ?, created = coalesce(?, created), changed_at = ?,"
    " raw = ? WHERE id = ?"
)  # parameters: raw_state, state, hash, fp, created, changed_at, raw, id


def append(conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    """Append rows (id, source, key, raw_state, state, hash, tag, fp, created, first_seen, changed_at, raw) to
    ``orders``."""
    conn.executemany(
        "INSERT INTO orders (id, source, key, raw_state, state, hash, tag, fp, created, first_seen, changed_at, raw)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


_APPEND = (
    "INSERT INTO orders (source, key, raw_state, state, hash, tag, fp, created, first_seen, changed_at, raw) VALUES"
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
APPEND_ROWS = 2000  # rows per statement of append_unnumbered (11 parameters each, within SQLite's 32766)


def append_unnumbered(conn: sqlite3.Connection, rows: Sequence[Sequence[object]]) -> None:
    """Append rows (source, key, raw_state, state, hash, tag, fp, created, first_seen, changed_at, raw) to
    ``orders`` in this order, each taking the next id.

    A few statements of many rows each: executemany would step SQLite once a row, and every step gives up Python's
    GIL and must win it back from the event loop, which parses pages meanwhile."""
    for i in range(0, len(rows), APPEND_ROWS):
        chunk = rows[i : i + APPEND_ROWS]
        conn.execute(f"{_APPEND} {', '.join([_ROW] * len(chunk))}", list(chain.from_iterable(chunk)))


def remove(conn: sqlite3.Connection, source: str, keys: Sequence[str]) -> dict[str, str]:
    """Delete these orders of ``source``; returns the last stored JSON of each (``{}`` when it was not stored)."""
    last: dict[str, str] = {}
    for key in keys:
        gone = conn.execute(
            "DELETE FROM order_keys WHERE source = ? AND key = ? RETURNING id", (source, key)
        ).fetchone()
        row = conn.execute("DELETE FROM orders WHERE id = ? RETURNING raw", (gone[0],)).fetchone() if gone else None
        last[key] = row[0] if row else "{}"
    return last


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

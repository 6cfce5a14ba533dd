"""The snapshot counted and listed by raw state and by part, for incremental polls to check against the server's
own counts (``orderwatch.sweep.plan``).

A part is a range of *partition values*: an order's creation time (``by="created"``, the ``created`` column) or its
key (``by="key"``, through ``order_keys``). ``lo`` is inclusive, ``hi`` exclusive, None unbounded. A key search
(``key_holds``) counts the keys that hold a word anywhere, as a server's substring search does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Literal

from orderwatch.store.db import marks

By = Literal["created", "key"]
CHUNK = 500


def _range(column: str, lo: str | None, hi: str | None) -> tuple[str, list[Any]]:
    where, params = "", []
    if lo is not None:
        where += f" AND {column} >= ?"
        params.append(lo)
    if hi is not None:
        where += f" AND {column} < ?"
        params.append(hi)
    return where, params


def raw_states(conn: sqlite3.Connection, source: str) -> list[str]:
    """The distinct raw states of the stored orders of ``source`` (one index probe each)."""
    found: list[str] = []
    while True:
        row = conn.execute(
            "SELECT raw_state FROM orders WHERE source = ? AND raw_state > ? ORDER BY raw_state LIMIT 1",
            (source, found[-1] if found else ""),
        ).fetchone()
        if row is None:
            return found
        found.append(row[0])


def newest(conn: sqlite3.Connection, source: str) -> str | None:
    """The latest creation time of the stored orders of ``source``."""
    found: str | None = None
    for state in raw_states(conn, source):
        row = conn.execute(
            "SELECT max(created) FROM orders WHERE source = ? AND raw_state = ?", (source, state)
        ).fetchone()
        if row[0] is not None and (found is None or row[0] > found):
            found = row[0]
    return found


def state_counts(conn: sqlite3.Connection, source: str, created_since: str | None = None) -> dict[str, int]:
    """How many stored orders of ``source`` are in each raw state (created at or after ``created_since``)."""
    found: dict[str, int] = {}
    for state in raw_states(conn, source):
        where, params = _range("created", created_since, None)
        (n,) = conn.execute(
            f"SELECT count(*) FROM orders WHERE source = ? AND raw_state = ?{where}", [source, state, *params]
        ).fetchone()
        if n:
            found[state] = int(n)
    return found


def count(
    conn: sqlite3.Connection,
    source: str,
    *,
    state: str | None = None,
    by: By = "created",
    lo: str | None = None,
    hi: str | None = None,
    key_holds: str | None = None,
) -> int:
    """How many stored orders of ``source`` are in raw ``state`` (None: any) in the part ``[lo, hi)`` — or, with
    ``key_holds``, whose key holds that word."""
    states = [state] if state is not None else raw_states(conn, source)
    if key_holds is not None:
        sql = f"SELECT count(*) FROM orders WHERE source = ? AND raw_state IN ({marks(len(states))})"
        return int(conn.execute(sql + " AND instr(key, ?) > 0", [source, *states, key_holds]).fetchone()[0])
    if by == "key":
        where, params = _range("k.key", lo, hi)
        if state is None:
            sql = f"SELECT count(*) FROM order_keys k WHERE k.source = ?{where}"
            return int(conn.execute(sql, [source, *params]).fetchone()[0])
        sql = "SELECT count(*) FROM order_keys k JOIN orders o ON o.id = k.id WHERE k.source = ? AND o.raw_state = ?"
        return int(conn.execute(sql + where, [source, state, *params]).fetchone()[0])
    where, params = _range("created", lo, hi)
    total = 0
    for raw in states:
        sql = f"SELECT count(*) FROM orders WHERE source = ? AND raw_state = ?{where}"
        total += int(conn.execute(sql, [source, raw, *params]).fetchone()[0])
    return total


def rows(
    conn: sqlite3.Connection,
    source: str,
    *,
    states: Sequence[str] | None = None,
    keys: Sequence[str] = (),
    by: By = "created",
    lo: str | None = None,
    hi: str | None = None,
) -> list[tuple[str, str, str | None]]:
    """(key, raw state, creation time) of the stored orders of ``source`` among ``keys``, or in ``states`` (None:
    any) in the part ``[lo, hi)``."""
    if keys:
        found: list[tuple[str, str, str | None]] = []
        for i in range(0, len(keys), CHUNK):
            chunk = list(keys[i : i + CHUNK])
            found += conn.execute(
                "SELECT k.key, o.raw_state, o.created FROM order_keys k JOIN orders o ON o.id = k.id"
                f" WHERE k.source = ? AND k.key IN ({marks(len(chunk))})",
                [source, *chunk],
            ).fetchall()
        return found
    chosen = list(states) if states is not None else raw_states(conn, source)
    if not chosen:
        return []
    if by == "key":
        where, params = _range("k.key", lo, hi)
        sql = (
            "SELECT k.key, o.raw_state, o.created FROM order_keys k JOIN orders o ON o.id = k.id WHERE k.source = ?"
            f" AND o.raw_state IN ({marks(len(chosen))}){where}"
        )
        return list(conn.execute(sql, [source, *chosen, *params]).fetchall())
    where, params = _range("created", lo, hi)
    sql = f"SELECT key, raw_state, created FROM orders WHERE source = ? AND raw_state IN ({marks(len(chosen))}){where}"
    return list(conn.execute(sql, [source, *chosen, *params]).fetchall())


SAMPLE = 64  # partition values around the middle handed out to cut a part (with the lowest and the highest)


def values(
    conn: sqlite3.Connection,
    source: str,
    *,
    state: str | None = None,
    by: By = "created",
    lo: str | None = None,
    hi: str | None = None,
) -> list[str]:
    """Sorted partition values (creation times or keys) of the stored orders of ``source`` in raw ``state``
    (None: any) in the part ``[lo, hi)``: the lowest, the highest, and ``SAMPLE`` around the middle — what it
    takes to cut the part near its middle, without reading every value of a big part."""
    if by == "key":
        column, table = "k.key", "order_keys k JOIN orders o ON o.id = k.id"
        where, params = _range("k.key", lo, hi)
        sql = f"FROM {table} WHERE k.source = ?{where}" + (" AND o.raw_state = ?" if state is not None else "")
    else:
        column = "created"
        where, params = _range("created", lo, hi)
        sql = f"FROM orders WHERE source = ? AND created IS NOT NULL{where}"
        sql += " AND raw_state = ?" if state is not None else ""
    args = [source, *params, *([state] if state is not None else [])]
    (n,) = conn.execute(f"SELECT count(*) {sql}", args).fetchone()
    if not n:
        return []
    ends = [
        conn.execute(f"SELECT {column} {sql} ORDER BY {column} {d} LIMIT 1", args).fetchone()[0] for d in ("", "DESC")
    ]
    middle = conn.execute(
        f"SELECT {column} {sql} ORDER BY {column} LIMIT ? OFFSET ?", [*args, SAMPLE, max(0, n // 2 - SAMPLE // 2)]
    ).fetchall()
    return sorted({*ends, *(v for (v,) in middle)})

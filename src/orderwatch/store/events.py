"""The event log: one row per recorded change of an order, and the CLI's queries over it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from orderwatch.core.model import Event
from orderwatch.store import rows
from orderwatch.store.db import marks, named


def insert(conn: sqlite3.Connection, ev: Event, order_json: str) -> int:
    """Append ``ev`` (with ``order_json``, the order as it is to be shown); returns its id."""
    cur = conn.execute(
        "INSERT INTO events (source, order_id, kind, from_state, to_state, raw_from, raw_to, detected_at, order_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ev.source,
            ev.order_id,
            ev.kind,
            ev.from_state,
            ev.to_state,
            ev.raw_from,
            ev.raw_to,
            ev.detected_at,
            order_json,
        ),
    )
    return int(cur.lastrowid or 0)


def matching(conn: sqlite3.Connection, flt: rows.EventFilter) -> list[Event]:
    """Recorded events matching ``flt``, oldest first (``limit``: the newest N, still oldest first)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("detected_at >= ?", flt.since),
        ("source = ?", flt.source),
        ("order_id = ?", flt.order_id),
        ("kind = ?", flt.kind),
        ("id > ?", flt.after_id),
    ):
        if value is not None:
            where.append(column)
            params.append(value)
    if flt.state is not None:
        where.append("(lower(to_state) = lower(?) OR lower(from_state) = lower(?))")
        params += [flt.state, flt.state]
    sql = f"SELECT {rows.EVENT_COLUMNS} FROM events" + (" WHERE " + " AND ".join(where) if where else "")
    if flt.limit is not None:
        sql = f"SELECT {rows.EVENT_COLUMNS} FROM ({sql} ORDER BY id DESC LIMIT ?) ORDER BY id"
        params.append(flt.limit)
    else:
        sql += " ORDER BY id"
    return [rows.event(r) for r in named(conn, sql, params)]


def by_id(conn: sqlite3.Connection, ids: Sequence[int]) -> list[Event]:
    """The events with these ids, in id order."""
    if not ids:
        return []
    sql = f"SELECT {rows.EVENT_COLUMNS} FROM events WHERE id IN ({marks(len(ids))}) ORDER BY id"
    return [rows.event(r) for r in named(conn, sql, list(ids))]

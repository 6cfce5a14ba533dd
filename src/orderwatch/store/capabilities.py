"""What each source's server has proven it does (or does not): its state filter, sort, counts, parts, detail
endpoint, search. Learned by polls from the server's answers, kept so that a new process does not learn again."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping


def get(conn: sqlite3.Connection, source: str) -> dict[str, tuple[bool, str]]:
    """name -> (proven, when it was learned) for ``source``."""
    rows = conn.execute("SELECT name, ok, learned_at FROM capabilities WHERE source = ?", (source,))
    return {name: (bool(ok), learned_at) for name, ok, learned_at in rows}


def learn(conn: sqlite3.Connection, source: str, found: Mapping[str, tuple[bool, str]], now: str) -> None:
    """Remember ``found`` (name -> (proven, note)); a capability whose verdict did not change keeps its date."""
    conn.executemany(
        "INSERT INTO capabilities (source, name, ok, note, learned_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (source, name) DO UPDATE SET note = excluded.note,"
        " learned_at = CASE WHEN ok = excluded.ok THEN learned_at ELSE excluded.learned_at END, ok = excluded.ok",
        [(source, name, int(ok), note[:500], now) for name, (ok, note) in found.items()],
    )

"""All SQL of orderwatch: schema migrations, the per-source snapshot, events, the outbox, and the CLI's queries.

One SQLite file in WAL mode, so the CLI reads while the daemon writes. The schema is applied with sqlite-utils
``Migrations``; the hot path (snapshot load, changed-row writes) uses sqlite3 directly with ``executemany``.
A ``Store`` serialises its own use with a lock, so worker threads may share it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from orderwatch.core.fingerprints import FingerprintIndex, fingerprint, tag_of
from orderwatch.core.model import Change, Event, EventKind, Known, Order, content_hash
from orderwatch.errors import StoreError

if TYPE_CHECKING:
    import sqlite_utils


def _migrations() -> Any:
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
    """Register a schema step under ``name`` (applied in order, once, by ``_migrations().apply``)."""

    def register(step: Step) -> Step:
        _STEPS.append((name, step))
        return step

    return register


_CHUNK = 500  # keys per IN (...) query


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


class DeliveryLike(Protocol):
    """What ``record`` needs of a routed delivery (``orderwatch.core.rules.Delivery``)."""

    @property
    def channel(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def event_indexes(self) -> tuple[int, ...]: ...
    @property
    def digest(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class SourceState:
    """The bookkeeping row of one source."""

    name: str
    baseline_at: str | None
    last_poll_at: str | None
    last_success_at: str | None
    last_full_at: str | None
    last_error: str | None
    last_error_at: str | None
    failures: int
    failing_since: str | None
    alerted: bool
    orders: int
    last_requests: int | None
    last_duration: float | None
    next_poll_at: str | None
    baseline_tries: int = 0  # complete full sweeps that were not consistent enough to be the baseline


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One snapshot row, for ``orderwatch orders``."""

    source: str
    key: str
    raw_state: str
    state: str
    first_seen: str
    changed_at: str
    raw: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One notification waiting, sent or failed."""

    id: int
    channel: str
    rule: str
    digest: bool
    event_ids: tuple[int, ...]
    status: str
    attempts: int
    created_at: str
    next_attempt_at: str
    done_urls: tuple[int, ...]
    last_error: str | None
    sent_at: str | None
    title: str | None = None  # a free-form notice (health alert, test message) instead of events
    body: str | None = None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Filters of ``orderwatch changes``; every field optional."""

    since: str | None = None
    source: str | None = None
    order_id: str | None = None
    state: str | None = None
    kind: str | None = None
    after_id: int | None = None
    limit: int | None = None


def _create_private(path: Path) -> None:
    """Create ``path`` (and the SQLite side files' future siblings) readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)


@dataclass(slots=True)
class _Kept:
    """A source's fingerprint index kept between sweeps, and the rows written while a sweep reads it."""

    index: FingerprintIndex
    version: int  # PRAGMA data_version when read: another connection's write makes it stale
    lent: FingerprintIndex | None = None  # the view a sweep is using
    pending: list[tuple[int, int]] = field(default_factory=list)


class Store:
    """The database. Open with ``Store.open(path)``; ``readonly=True`` for the CLI's queries."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()
        self._kept: dict[str, _Kept] = {}  # source -> its fingerprint index, kept in step with this store's writes

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False, timeout: float = 10.0) -> Store:
        """Open (and, unless ``readonly``, create and migrate) the database at ``path``."""
        p = Path(path)
        try:
            if readonly:
                if not p.exists():
                    raise StoreError(f"no database at {p} yet: run `orderwatch poll` or `orderwatch run` first")
                conn = sqlite3.connect(
                    f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout, check_same_thread=False
                )
            else:
                if str(path) != ":memory:" and not p.exists():
                    _create_private(p)
                conn = sqlite3.connect(p, timeout=timeout, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                import sqlite_utils

                _migrations().apply(sqlite_utils.Database(conn))
            conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open database {p}: {exc} (check the path, its permissions and free space)"
            ) from exc
        return cls(conn, p)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so it cannot deadlock on upgrade."""
        with self._lock:
            conn = self._conn
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
                raise StoreError(f"database {self.path}: {exc}{_hint(exc)}") from exc

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, outside any transaction; its errors become ``StoreError``."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise StoreError(f"database {self.path}: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"database {self.path}: {exc}") from exc

    # ---- snapshot ---------------------------------------------------------------------------------------------

    def snapshot(self, source: str) -> dict[str, Known]:
        """What the snapshot knows of every order of ``source`` (tests and tools; polls look up page by page)."""
        rows = self._read("SELECT key, raw_state, state, hash FROM orders WHERE source = ?", (source,))
        return {key: Known(raw_state, state, digest) for key, raw_state, state, digest in rows}

    def known(self, source: str, keys: Sequence[str]) -> dict[str, Known]:
        """What the snapshot knows of these orders of ``source`` (those it has)."""
        found: dict[str, Known] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            rows = self._read(
                "SELECT key, raw_state, state, hash FROM orders WHERE source = ? AND key IN"
                f" ({','.join('?' * len(chunk))})",
                [source, *chunk],
            )
            found.update({key: Known(raw_state, state, digest) for key, raw_state, state, digest in rows})
        return found

    def known_in_states(self, source: str, states: Sequence[str]) -> dict[str, Known]:
        """The snapshot's orders of ``source`` whose canonical state is one of ``states``."""
        if not states:
            return {}
        rows = self._read(
            "SELECT key, raw_state, state, hash FROM orders WHERE source = ? AND state IN"
            f" ({','.join('?' * len(states))})",
            [source, *states],
        )
        return {key: Known(raw_state, state, digest) for key, raw_state, state, digest in rows}

    # ---- the keys a full sweep has seen, in a temporary table (memory does not grow with the list) --------------

    def seen_begin(self, source: str) -> None:
        """Start tracking the keys a sweep of ``source`` sees."""
        with self._guard() as conn:
            # No rollback journal for temporary tables: the seen-keys table is scratch, and journaling its reused
            # pages at every page's insert made a sweep ~6x slower.
            conn.execute("PRAGMA temp.journal_mode=OFF")
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS seen (source TEXT, key TEXT, PRIMARY KEY (source, key)) WITHOUT ROWID"
            )
            conn.execute("DELETE FROM temp.seen WHERE source = ?", (source,))

    def seen_add(self, source: str, keys: Sequence[str]) -> int:
        """Note keys seen by the sweep; returns how many had not been seen before in it."""
        with self._guard() as conn:
            cur = conn.executemany(
                "INSERT OR IGNORE INTO temp.seen (source, key) VALUES (?, ?)", [(source, k) for k in keys]
            )
            return cur.rowcount

    def unseen(self, source: str, *, seen: Callable[[str], bool] | None = None) -> dict[str, Known]:
        """The snapshot's orders of ``source`` that the sweep did not see: neither in the seen-keys table nor
        ``seen`` by the caller (its fingerprint index)."""
        found: dict[str, Known] = {}
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT key, raw_state, state, hash FROM orders o WHERE source = ?"
                " AND NOT EXISTS (SELECT 1 FROM temp.seen s WHERE s.source = o.source AND s.key = o.key)",
                (source,),
            )
            for key, raw_state, state, digest in rows:  # row by row: most of a big account may be listed here
                if seen is None or not seen(key):
                    found[key] = Known(raw_state, state, digest)
        return found

    def fingerprint_index(self, source: str) -> FingerprintIndex:
        """Every stored order of ``source`` in a ``FingerprintIndex``, for one sweep; give it back with
        ``fingerprints_done``.

        The index is kept between sweeps and brought up to date with every row this store writes, so only the
        first sweep of a process reads it (row by row: memory stays flat). It is read again when another connection
        has written to the database (``PRAGMA data_version``), and after anything the kept copy cannot follow:
        removed rows, a tag shared by two keys, a full index, a failed write.
        """
        with self._guard() as conn:
            (version,) = conn.execute("PRAGMA data_version").fetchone()
            kept = self._kept.get(source)
            if kept is not None and kept.version == version and kept.lent is None:
                kept.lent = kept.index.view()
                return kept.lent
            conn.execute("BEGIN")  # one read snapshot: the count and the rows agree
            try:
                (count,) = conn.execute("SELECT count(*) FROM orders WHERE source = ?", (source,)).fetchone()
                rows = conn.execute("SELECT tag, fp FROM orders WHERE source = ?", (source,))
                index = FingerprintIndex.build(rows, count)
            finally:
                conn.execute("COMMIT")
            if kept is not None and kept.lent is not None:
                return index.view()  # another sweep of this source has the kept one (not done by the poller)
            if index.ambiguous:
                self._kept.pop(source, None)
                return index
            kept = self._kept[source] = _Kept(index, version)
            kept.lent = index.view()
            return kept.lent

    def fingerprints_done(self, source: str, index: FingerprintIndex) -> None:
        """A sweep is done with ``index`` (from ``fingerprint_index``): the rows written meanwhile reach the kept
        index now."""
        with self._lock:
            kept = self._kept.get(source)
            if kept is None or kept.lent is not index:
                return
            kept.lent = None
            pending, kept.pending = kept.pending, []
            self._keep(source, pending)

    @contextmanager
    def _writing(self, source: str) -> Iterator[tuple[sqlite3.Connection, list[list[tuple[int, int]] | None]]]:
        """One write transaction on the orders of ``source``. The body appends what ``_written`` says of each
        write; the kept index follows once the transaction has committed, and is forgotten if it fails."""
        written: list[list[tuple[int, int]] | None] = []
        with self._lock:
            try:
                with self._tx() as conn:
                    yield conn, written
            except BaseException:
                self._keep(source, None)
                raise
            self._keep(source, None if None in written else [p for rows in written if rows for p in rows])

    def _keep(self, source: str, written: list[tuple[int, int]] | None) -> None:
        """Bring the kept index of ``source`` up to date with committed rows (``None``: forget it)."""
        kept = self._kept.get(source)
        if kept is None:
            return
        if written is None or len(kept.pending) > kept.index.size:
            del self._kept[source]
        elif kept.lent is not None:  # a sweep reads the arrays: they change when it is done
            kept.pending.extend(written)
        elif not all(kept.index.put(tag, fp) for tag, fp in written):
            del self._kept[source]

    def _written(
        self, conn: sqlite3.Connection, source: str, written: list[tuple[int, int]], *, removed: bool
    ) -> list[tuple[int, int]] | None:
        """What a write (inside its transaction) means for the kept index: its rows, or None when the kept index
        cannot follow it (removed rows; a written tag that two stored keys now share)."""
        if removed:
            return None
        if source not in self._kept or not written:
            return written
        tags = sorted({tag for tag, _ in written})
        for i in range(0, len(tags), _CHUNK):
            chunk = tags[i : i + _CHUNK]
            shared = conn.execute(
                f"SELECT 1 FROM orders WHERE source = ? AND tag IN ({','.join('?' * len(chunk))})"
                " GROUP BY tag HAVING count(*) > 1 LIMIT 1",
                [source, *chunk],
            ).fetchone()
            if shared:
                return None
        return written

    def stored_states(self, source: str) -> list[str]:
        """The distinct canonical states of the stored orders of ``source`` (one index probe per state)."""
        found: list[str] = []
        with self._guard() as conn:
            while True:
                row = conn.execute(
                    "SELECT min(state) FROM orders WHERE source = ? AND state > ?", (source, found[-1] if found else "")
                ).fetchone()
                if row[0] is None:
                    return found
                found.append(row[0])

    def seen_end(self, source: str) -> None:
        """Forget the keys of the sweep of ``source``."""
        with self._guard() as conn:
            conn.execute("DELETE FROM temp.seen WHERE source = ?", (source,))

    def write_rows(self, source: str, orders: Sequence[Order], *, now: str) -> None:
        """Write changed rows that carry no event (content changes, baseline rows) in their own transaction."""
        with self._writing(source) as (conn, written):
            written.append(self._written(conn, source, _upsert(conn, source, orders, now), removed=False))

    def created_at(self, source: str, keys: Sequence[str]) -> dict[str, str]:
        """The stored ``created_at`` of these orders (those that have one)."""
        found: dict[str, str] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = list(keys[i : i + _CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = self._read(
                f"SELECT key, json_extract(raw, '$.created_at') FROM orders WHERE source = ? AND key IN ({marks})",
                [source, *chunk],
            )
            found.update({k: v for k, v in rows if isinstance(v, str)})
        return found

    def source_state(self, source: str) -> SourceState | None:
        """The bookkeeping row of ``source``, if it was ever polled."""
        rows = self._read("SELECT * FROM sources WHERE name = ?", (source,))
        return _source_state(rows[0]) if rows else None

    def source_states(self) -> list[SourceState]:
        """Every source ever polled."""
        return [_source_state(r) for r in self._read("SELECT * FROM sources ORDER BY name")]

    def record(
        self,
        source: str,
        change: Change,
        deliveries: Sequence[DeliveryLike],
        *,
        now: str,
        full: bool,
        requests: int = 0,
        duration: float | None = None,
        error: str | None = None,
    ) -> list[Event]:
        """Write ``change`` — snapshot rows, events and their outbox rows — in one transaction.

        Returns the events with their ids (and, for ``vanished``, the order as last stored).
        """
        stored: list[Event] = []
        with self._writing(source) as (conn, written):
            conn.execute("INSERT OR IGNORE INTO sources (name) VALUES (?)", (source,))
            vanished_raw: dict[str, str] = {}
            if change.removals:
                for key in change.removals:
                    row = conn.execute("SELECT raw FROM orders WHERE source = ? AND key = ?", (source, key)).fetchone()
                    vanished_raw[key] = row[0] if row else "{}"
                conn.executemany(
                    "DELETE FROM orders WHERE source = ? AND key = ?", [(source, k) for k in change.removals]
                )
            written.append(
                self._written(conn, source, _upsert(conn, source, change.upserts, now), removed=bool(change.removals))
            )
            for ev in change.events:
                order_json = (
                    ev.order_json.decode() if ev.order_json is not None else vanished_raw.get(ev.order_id, "{}")
                )
                cur = conn.execute(
                    "INSERT INTO events (source, order_id, kind, from_state, to_state, raw_from, raw_to,"
                    " detected_at, order_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                stored.append(_with_id(ev, cur.lastrowid, order_json))
            for d in deliveries:
                ids = [stored[i].id for i in d.event_indexes]
                conn.execute(
                    "INSERT INTO outbox (channel, rule, digest, event_ids, created_at, next_attempt_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (d.channel, d.rule, int(d.digest), orjson.dumps(ids).decode(), now, now),
                )
            count = conn.execute("SELECT count(*) FROM orders WHERE source = ?", (source,)).fetchone()[0]
            conn.execute(
                "UPDATE sources SET last_poll_at = :now, orders = :count, last_requests = :requests,"
                " last_duration = :duration,"
                " baseline_at = CASE WHEN :baseline AND baseline_at IS NULL THEN :now ELSE baseline_at END,"
                " last_full_at = CASE WHEN :full THEN :now ELSE last_full_at END,"
                " baseline_tries = baseline_tries + CASE WHEN :tried AND baseline_at IS NULL THEN 1 ELSE 0 END"
                " WHERE name = :name",
                {
                    "now": now,
                    "count": count,
                    "requests": requests,
                    "duration": duration,
                    "baseline": change.baseline,
                    "full": full and error is None,
                    "tried": full and error is None and not change.baseline,
                    "name": source,
                },
            )
            if error is None:
                conn.execute(
                    "UPDATE sources SET last_success_at = ?, failures = 0, failing_since = NULL WHERE name = ?",
                    (now, source),
                )
            else:
                _note_failure(conn, source, error, now)
        return stored

    def record_failure(self, source: str, error: str, *, now: str) -> SourceState:
        """Note a failed poll of ``source``; returns its state after the update."""
        with self._tx() as conn:
            conn.execute("INSERT OR IGNORE INTO sources (name) VALUES (?)", (source,))
            conn.execute("UPDATE sources SET last_poll_at = ? WHERE name = ?", (now, source))
            _note_failure(conn, source, error, now)
        state = self.source_state(source)
        assert state is not None
        return state

    def set_next_poll(self, source: str, when: str | None) -> None:
        """Remember when the daemon will next poll ``source`` (for ``orderwatch status``)."""
        with self._tx() as conn:
            conn.execute("INSERT OR IGNORE INTO sources (name) VALUES (?)", (source,))
            conn.execute("UPDATE sources SET next_poll_at = ? WHERE name = ?", (when, source))

    def enqueue_notice(self, channel: str, rule: str, title: str, body: str, *, now: str) -> int:
        """Queue a free-form notice (e.g. a health alert) for ``channel``; returns its outbox id."""
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO outbox (channel, rule, digest, event_ids, created_at, next_attempt_at, title, body)"
                " VALUES (?, ?, 0, '[]', ?, ?, ?, ?)",
                (channel, rule, now, now, title, body),
            )
            return int(cur.lastrowid or 0)

    def set_alerted(self, source: str, alerted: bool) -> None:
        """Remember whether a health alert is out for ``source``."""
        with self._tx() as conn:
            conn.execute("UPDATE sources SET alerted = ? WHERE name = ?", (int(alerted), source))

    # ---- queries for the CLI ----------------------------------------------------------------------------------

    def events(self, flt: EventFilter = EventFilter()) -> list[Event]:
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
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        if flt.limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?) ORDER BY id"
            params.append(flt.limit)
        else:
            sql += " ORDER BY id"
        return [_event(r) for r in self._read(sql, params)]

    def events_by_id(self, ids: Sequence[int]) -> list[Event]:
        """The events with these ids, in id order."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return [_event(r) for r in self._read(f"SELECT * FROM events WHERE id IN ({marks}) ORDER BY id", list(ids))]

    def orders(self, source: str | None = None, state: str | None = None) -> list[OrderRow]:
        """The current snapshot, newest change first."""
        where, params = [], []
        if source is not None:
            where.append("source = ?")
            params.append(source)
        if state is not None:
            where.append("lower(state) = lower(?)")
            params.append(state)
        sql = "SELECT source, key, raw_state, state, first_seen, changed_at, raw FROM orders"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY changed_at DESC, source, key"
        return [OrderRow(*r) for r in self._read(sql, params)]

    # ---- outbox -----------------------------------------------------------------------------------------------

    def claim_due(self, *, now: str, lease_until: str, limit: int = 50) -> list[OutboxRow]:
        """Lease up to ``limit`` due pending rows (so a second deliverer skips them) and return them."""
        with self._tx() as conn:
            rows = conn.execute(
                "UPDATE outbox SET lease_until = ? WHERE id IN (SELECT id FROM outbox WHERE status = 'pending'"
                " AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?) ORDER BY id LIMIT ?)"
                " RETURNING *",
                (lease_until, now, now, limit),
            ).fetchall()
        return sorted((_outbox(r) for r in rows), key=lambda r: r.id)

    def release_leases(self) -> int:
        """Drop every lease on pending rows (at daemon start: the process that held them is gone)."""
        with self._tx() as conn:
            return conn.execute(
                "UPDATE outbox SET lease_until = NULL WHERE status = 'pending' AND lease_until IS NOT NULL"
            ).rowcount

    def mark_sent(self, row_id: int, *, now: str) -> None:
        """The notification reached every URL of its channel."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, lease_until = NULL,"
                " last_error = NULL WHERE id = ?",
                (now, row_id),
            )

    def mark_retry(self, row_id: int, *, next_at: str, error: str, done_urls: Sequence[int]) -> None:
        """Some URL failed for now: try again at ``next_at``; ``done_urls`` already got it."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, done_urls = ?,"
                " lease_until = NULL WHERE id = ?",
                (next_at, error, orjson.dumps(sorted(done_urls)).decode(), row_id),
            )

    def mark_failed(self, row_id: int, *, error: str, done_urls: Sequence[int]) -> None:
        """Give up on a row: a permanent failure, or retries ran out."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, done_urls = ?,"
                " lease_until = NULL WHERE id = ?",
                (error, orjson.dumps(sorted(done_urls)).decode(), row_id),
            )

    def outbox(self, status: str | None = None, limit: int | None = None) -> list[OutboxRow]:
        """Outbox rows, oldest first, optionally of one status."""
        sql = "SELECT * FROM outbox" + (" WHERE status = ?" if status else "") + " ORDER BY id"
        params: list[Any] = [status] if status else []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_outbox(r) for r in self._read(sql, params)]

    def outbox_depth(self) -> int:
        """How many notifications are waiting to be delivered."""
        return int(self._read("SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0])

    def requeue(self, ids: Sequence[int] = (), *, now: str) -> int:
        """Make failed (or the given) rows pending and due now; returns how many changed."""
        with self._tx() as conn:
            if ids:
                marks = ",".join("?" * len(ids))
                cur = conn.execute(
                    f"UPDATE outbox SET status = 'pending', next_attempt_at = ?, lease_until = NULL"
                    f" WHERE status != 'sent' AND id IN ({marks})",
                    (now, *ids),
                )
            else:
                cur = conn.execute(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = ?, lease_until = NULL"
                    " WHERE status = 'failed'",
                    (now,),
                )
            return cur.rowcount


def _hint(exc: sqlite3.Error) -> str:
    """What to check for a failed write."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return " (another process holds a write lock for too long: is a second daemon running?)"
    if "full" in text:
        return " (free some disk space; nothing was recorded, the next poll retries)"
    if "readonly" in text or "read-only" in text:
        return " (the file or its folder is read-only for this user)"
    return ""


def _upsert(conn: sqlite3.Connection, source: str, orders: Sequence[Order], now: str) -> list[tuple[int, int]]:
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


def _note_failure(conn: sqlite3.Connection, source: str, error: str, now: str) -> None:
    conn.execute(
        "UPDATE sources SET last_error = ?, last_error_at = ?, failures = failures + 1,"
        " failing_since = coalesce(failing_since, ?) WHERE name = ?",
        (error, now, now, source),
    )


def _with_id(ev: Event, row_id: int | None, order_json: str) -> Event:
    return Event(
        ev.source,
        ev.order_id,
        ev.kind,
        ev.from_state,
        ev.to_state,
        ev.raw_from,
        ev.raw_to,
        ev.detected_at,
        order_json.encode(),
        row_id,
    )


def _event(r: Sequence[Any]) -> Event:
    row_id, source, order_id, kind, from_state, to_state, raw_from, raw_to, detected_at, order_json = r
    kind_t: EventKind = kind
    return Event(
        source,
        order_id,
        kind_t,
        from_state,
        to_state,
        raw_from,
        raw_to,
        detected_at,
        order_json.encode(),
        row_id,
    )


def _source_state(r: Sequence[Any]) -> SourceState:
    values = list(r)
    values[9] = bool(values[9])  # alerted
    return SourceState(*values)


def _outbox(r: Sequence[Any]) -> OutboxRow:
    row_id, channel, rule, digest, event_ids, status, attempts, created_at, next_at, _lease, done, error, sent = r[:13]
    title, body = r[13:15]
    return OutboxRow(
        row_id,
        channel,
        rule,
        bool(digest),
        tuple(orjson.loads(event_ids)),
        status,
        attempts,
        created_at,
        next_at,
        tuple(orjson.loads(done)),
        error,
        sent,
        title,
        body,
    )

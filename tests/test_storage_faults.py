"""Issue 5's storage faults: a write lock held elsewhere, a read-only database and a full disk are waited out or
reported as clear errors, never a silent loss: once the fault is gone the next poll records the events it missed.

Tests may run as root, where ``chmod 0400`` does not stop writes; a read-only database is therefore opened the way
SQLite opens a file it cannot write: read-only (``mode=ro``), in autocommit mode like ``Store.open``.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from types import FrameType

import anyio
import pytest

from orderwatch.config import Config, load_config
from orderwatch.errors import StoreError
from orderwatch.simulator import SimServer, Simulator
from orderwatch.store import Store
from orderwatch.store.db import Database
from orderwatch.sweep import http
from orderwatch.sweep.poller import Poller, PollResult
from tests.conftest import config_text, run_cli

Expected = set[tuple[str, str, str, str | None, str | None]]


def load(tmp_path: Path, url: str) -> Config:
    """A config for both simulated APIs with its database in ``tmp_path``."""
    path = tmp_path / "ow.toml"
    path.write_text(config_text(url, tmp_path / "ow.db"))
    return load_config(path)


@asynccontextmanager
async def poller_on(store: Store) -> AsyncIterator[Poller]:
    """A poller writing to ``store`` (closed afterwards)."""
    try:
        async with http.clients() as pool:
            yield Poller(store, pool)
    finally:
        store.close()


async def poll_all(poller: Poller, conf: Config) -> list[PollResult]:
    """Full sweeps of every source."""
    return await poller.poll_many(list(conf.sources.values()), full=True)


def got(results: list[PollResult]) -> Expected:
    """(source, order, kind, raw_from, raw_to) of every event in ``results``."""
    return {(e.source, e.order_id, e.kind, e.raw_from, e.raw_to) for r in results for e in r.events}


def make_changes(sim: Simulator) -> Expected:
    """Change a few orders of both APIs and add one; the events a poll must report for them."""
    ace = [o["id"] for o in sim.orders("ace")]
    lsky = [o["trade_no"] for o in sim.orders("lsky")]
    sim.set_state("ace", ace[0], "Paid")
    sim.set_state("lsky", lsky[0], "cancelled")
    [new] = sim.add_ace(1)
    return {
        ("ace", ace[0], "transition", "Pending", "Paid"),
        ("images", lsky[0], "transition", "unpaid", "cancelled"),
        ("ace", new, "appeared", None, "Pending"),
    }


async def baseline(conf: Config) -> None:
    """Record the baseline of both sources."""
    async with poller_on(Store.open(conf.database)) as poller:
        results = await poll_all(poller, conf)
    assert all(r.baseline for r in results), [r.error for r in results]


@pytest.fixture
def write_lock(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the test database, ready to take the write lock; rolled back and closed afterwards."""
    conn = sqlite3.connect(tmp_path / "ow.db", timeout=5, isolation_level=None, check_same_thread=False)
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def waiting_on_the_store() -> bool:
    """True while some thread is inside a write transaction of the store: taking the write lock (BEGIN IMMEDIATE)
    or writing."""
    code = Database.transaction.__wrapped__.__code__  # type: ignore[attr-defined]
    for frame in sys._current_frames().values():
        f: FrameType | None = frame
        while f is not None:
            if f.f_code is code:
                return True
            f = f.f_back
    return False


@pytest.mark.anyio
async def test_poll_waits_for_a_write_lock_held_elsewhere(
    tmp_path: Path, sim: Simulator, server: SimServer, write_lock: sqlite3.Connection
) -> None:
    """A poll waits (busy timeout) while another connection holds the write lock, then records every event."""
    conf = load(tmp_path, server.url)
    await baseline(conf)
    expected = make_changes(sim)
    write_lock.execute("BEGIN IMMEDIATE")
    results: list[PollResult] = []
    async with poller_on(Store.open(conf.database, timeout=30)) as poller:

        async def poll() -> None:
            results.extend(await poll_all(poller, conf))

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            with anyio.fail_after(20):
                while not waiting_on_the_store():  # noqa: ASYNC110 (a thread's state, not an event we can await)
                    await anyio.sleep(0.01)
            assert results == []  # still waiting for the lock
            write_lock.execute("ROLLBACK")
    assert all(r.ok for r in results), [r.error for r in results]
    assert got(results) == expected


@pytest.mark.anyio
async def test_lock_held_past_the_busy_timeout_is_a_clear_error_and_nothing_is_lost(
    tmp_path: Path, sim: Simulator, server: SimServer, write_lock: sqlite3.Connection
) -> None:
    """A lock held past the busy timeout is a 'database is locked' error; the next poll records the same events."""
    conf = load(tmp_path, server.url)
    await baseline(conf)
    expected = make_changes(sim)
    write_lock.execute("BEGIN IMMEDIATE")
    async with poller_on(Store.open(conf.database, timeout=0.2)) as poller:
        locked = await poll_all(poller, conf)
        assert [r.source for r in locked] == ["ace", "images"]
        for r in locked:
            assert not r.ok and r.events == ()
            assert "database is locked" in (r.error or ""), r.error
        write_lock.execute("ROLLBACK")
        healed = await poll_all(poller, conf)
        assert all(r.ok for r in healed), [r.error for r in healed]
        assert got(healed) == expected
        assert {(e.source, e.order_id, e.kind, e.raw_from, e.raw_to) for e in poller.store.events()} == expected


def own_connection(path: Path) -> sqlite3.Connection:
    """A connection to the database at ``path`` set up as ``Store.open`` sets up its own (autocommit, shared with
    worker threads), for a test to change its limits while a ``Store`` wraps it."""
    return sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)


def read_only_store(path: Path) -> Store:
    """The database as SQLite opens it when the file cannot be written (root ignores chmod, so no chmod here):
    a read-only connection in autocommit mode, like the one ``Store.open`` makes."""
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    return Store(conn, path)


@pytest.mark.anyio
async def test_read_only_database_is_reported_and_the_events_come_after_the_fix(
    tmp_path: Path, sim: Simulator, server: SimServer
) -> None:
    """A read-only database is an error naming it, with no event; a writable one then gets exactly those events."""
    conf = load(tmp_path, server.url)
    await baseline(conf)
    expected = make_changes(sim)
    async with poller_on(read_only_store(conf.database)) as poller:
        for _ in range(2):
            failed = await poll_all(poller, conf)
            for r in failed:
                assert not r.ok and r.events == ()
                assert "attempt to write a readonly database" in (r.error or ""), r.error
                assert str(conf.database) in (r.error or "")
        assert poller.store.events() == []
    async with poller_on(Store.open(conf.database)) as poller:
        fixed = await poll_all(poller, conf)
        assert all(r.ok for r in fixed), [r.error for r in fixed]
        assert got(fixed) == expected
        assert got(await poll_all(poller, conf)) == set()


@pytest.mark.anyio
async def test_full_disk_rolls_back_the_whole_poll_and_the_next_poll_records_it(
    tmp_path: Path, sim: Simulator, server: SimServer
) -> None:
    """A full disk is an error naming it that records no event nor its row; with room, the next poll records all."""
    conf = load(tmp_path, server.url)
    await baseline(conf)
    expected = make_changes(sim)
    new = sim.add_lsky(60)
    expected |= {("images", key, "appeared", None, "unpaid") for key in new}
    conn = own_connection(conf.database)  # SQLite's per-connection size cap stands in for a full disk
    store = Store(conn, conf.database)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    async with poller_on(store) as poller:
        before = {name: poller.store.snapshot(name) for name in conf.sources}
        full = await poll_all(poller, conf)
        images = next(r for r in full if r.source == "images")
        assert not images.ok and images.events == ()
        assert "database or disk is full" in (images.error or ""), images.error
        assert poller.store.snapshot("images") == before["images"]
        conn.execute("PRAGMA max_page_count = 1073741823")
        room = await poll_all(poller, conf)
        assert all(r.ok for r in room), [r.error for r in room]
        recorded = {(e.source, e.order_id, e.kind, e.raw_from, e.raw_to) for e in poller.store.events()}
    assert recorded == expected
    assert got(full) | got(room) == expected


@pytest.mark.anyio
async def test_a_database_refusing_even_temporary_writes_fails_the_poll_without_a_crash(
    tmp_path: Path, sim: Simulator, server: SimServer
) -> None:
    """Any database failure during a sweep (here even temp tables refuse writes) is a poll error, not a crash."""
    conf = load(tmp_path, server.url)
    await baseline(conf)
    expected = make_changes(sim)
    conn = own_connection(conf.database)  # query_only makes SQLite refuse every write on it, temp ones too
    store = Store(conn, conf.database)
    conn.execute("PRAGMA query_only = ON")
    async with poller_on(store) as poller:
        failed = await poll_all(poller, conf)
        for r in failed:
            assert not r.ok and r.events == ()
            assert "attempt to write a readonly database" in (r.error or ""), r.error
        conn.execute("PRAGMA query_only = OFF")
        healed = await poll_all(poller, conf)
        assert all(r.ok for r in healed), [r.error for r in healed]
        assert got(healed) == expected


def test_unusable_database_path_is_a_clear_cli_error(config_file: Path, tmp_path: Path) -> None:
    """A database that cannot be created makes poll and the daemon exit 1 with the path, without a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    database = blocker / "sub" / "ow.db"
    for args in (("poll",), ("run",)):
        ran = run_cli(config_file, "--database", str(database), *args, timeout=30)
        assert "Traceback" not in ran.err, (args, ran.err)
        assert ran.code == 1, (args, ran.err)
        assert f"cannot open database {database}" in ran.err, ran.err


def test_store_open_turns_file_system_errors_into_store_errors(tmp_path: Path) -> None:
    """Store.open raises StoreError naming the path when the database file cannot even be created."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"cannot open database .*file/sub/ow\.db"):
        Store.open(blocker / "sub" / "ow.db")


def test_a_database_from_a_newer_orderwatch_is_a_clear_cli_error(config_file: Path, tmp_path: Path) -> None:
    """Commands on a database that a newer orderwatch migrated exit 2 with one line saying to upgrade, no
    traceback; the daemon too."""
    database = tmp_path / "ow.db"
    Store.open(database).close()
    with closing(sqlite3.connect(database)) as db, db:
        db.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('orderwatch', '0099_future', '')"
        )
    for args in (("poll",), ("changes",), ("status",), ("run",)):
        ran = run_cli(config_file, *args, timeout=30)
        assert "Traceback" not in ran.err, (args, ran.err)
        assert ran.code == 2, (args, ran.err)
        assert "0099_future" in ran.err and "upgrade orderwatch" in ran.err, (args, ran.err)

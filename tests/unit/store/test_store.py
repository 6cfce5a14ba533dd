"""The SQLite store: snapshot round trips, one-transaction records, outbox claims, read-only readers."""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
import threading
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderwatch.core.diff import diff
from orderwatch.core.fingerprints import fingerprint, tag_of
from orderwatch.core.model import Change, Known, Observation, Order
from orderwatch.errors import SchemaTooNew, StoreError
from orderwatch.store import EventFilter, Store, migrations
from orderwatch.store.db import PAGE_SIZE, Database
from orderwatch.store.sweep import BulkRow

T0 = "2026-11-22T10:00:00.000000Z"
T1 = "2026-11-22T10:01:00.000000Z"


@dataclass(frozen=True)
class Route:
    channel: str
    rule: str
    event_indexes: tuple[int, ...]
    digest: bool = False


def order(key: str, state: str) -> Order:
    return Order.build(key, state, state, {"id": key, "state": state, "price": 1.5})


def observe(*orders: Order) -> Observation:
    return Observation("ace", {o.key: o for o in orders}, complete=True, consistent=True)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "ow.db")


def test_database_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    """A new database is created mode 0600 and journals in WAL mode."""
    path = tmp_path / "sub" / "ow.db"
    Store.open(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_served_page_size_is_what_the_last_complete_full_sweep_saw(store: Store) -> None:
    """A complete full sweep stores the server's page cap it saw (or none); an incremental poll or a failed sweep
    leaves the one stored."""
    nothing = Change(events=(), upserts=(), removals=())

    def served() -> int | None:
        state = store.source_state("ace")
        return state.served_page if state is not None else -1

    store.record("ace", nothing, [], now=T0, full=True, served_page=10)
    assert served() == 10
    store.record("ace", nothing, [], now=T1, full=False, served_page=None)
    assert served() == 10
    store.record("ace", nothing, [], now=T1, full=True, error="page 3 failed", served_page=None)
    assert served() == 10
    store.record("ace", nothing, [], now=T1, full=True, served_page=None)
    assert served() is None


def test_record_stores_snapshot_events_and_outbox_together(store: Store) -> None:
    """Baseline rows, then a transition with its outbox row, are all visible after one record each."""
    base = diff({}, observe(order("a", "Pending")), baselined=False, now=T0)
    store.record("ace", base, [], now=T0, full=True)
    assert store.snapshot("ace") == {"a": Known("Pending", "Pending", order("a", "Pending").digest)}
    state = store.source_state("ace")
    assert state is not None and state.baseline_at == T0

    change = diff(store.snapshot("ace"), observe(order("a", "Expired")), baselined=True, now=T1)
    (event,) = store.record("ace", change, [Route("ops", "lost", (0,))], now=T1, full=True)
    assert event.id is not None and event.kind == "transition"
    assert store.events() == [event]
    (row,) = store.outbox("pending")
    assert (row.channel, row.rule, row.event_ids) == ("ops", "lost", (event.id,))


def test_vanished_event_keeps_the_last_stored_order(store: Store) -> None:
    """A vanished event carries the order as last stored, and the row leaves the snapshot."""
    store.record("ace", diff({}, observe(order("a", "Cancelled")), baselined=False, now=T0), [], now=T0, full=True)
    change = diff(store.snapshot("ace"), observe(), baselined=True, now=T1)
    (event,) = store.record("ace", change, [], now=T1, full=True)
    assert event.kind == "vanished"
    assert event.order() == {"id": "a", "state": "Cancelled", "price": 1.5}
    assert store.snapshot("ace") == {}


def test_a_failed_record_writes_nothing(store: Store) -> None:
    """If the transaction fails midway (unknown event index for an outbox row), no row, event or outbox survives."""
    store.record("ace", diff({}, observe(order("a", "Pending")), baselined=False, now=T0), [], now=T0, full=True)
    change = diff(store.snapshot("ace"), observe(order("a", "Paid")), baselined=True, now=T1)
    with pytest.raises(IndexError):
        store.record("ace", change, [Route("ops", "r", (5,))], now=T1, full=True)
    assert store.snapshot("ace")["a"].state == "Pending"
    assert store.events() == []
    assert store.outbox() == []


def test_event_filters(store: Store) -> None:
    """changes' filters select by source, order, state, kind, time and newest-N, oldest first."""
    store.record(
        "ace",
        diff({}, observe(order("a", "Pending"), order("b", "Pending")), baselined=False, now=T0),
        [],
        now=T0,
        full=True,
    )
    change = diff(
        store.snapshot("ace"),
        observe(order("a", "Paid"), order("b", "Expired"), order("c", "Pending")),
        baselined=True,
        now=T1,
    )
    store.record("ace", change, [], now=T1, full=True)
    assert [e.order_id for e in store.events(EventFilter(state="expired"))] == ["b"]
    assert [e.kind for e in store.events(EventFilter(kind="appeared"))] == ["appeared"]
    assert [e.order_id for e in store.events(EventFilter(order_id="a"))] == ["a"]
    assert len(store.events(EventFilter(since=T1))) == 3
    assert store.events(EventFilter(since="2026-11-23T00:00:00.000000Z")) == []
    newest = store.events(EventFilter(limit=2))
    assert [e.id for e in newest] == sorted(e.id for e in newest if e.id is not None)
    assert len(newest) == 2


def test_claimed_rows_are_leased_and_not_claimed_twice(store: Store) -> None:
    """A claimed outbox row is invisible to a second claimer until its lease ends, then retry/sent work."""
    row_id = store.enqueue_notice("ops", "health", "title", "body", now=T0)
    (claimed,) = store.claim_due(now=T0, lease_until=T1)
    assert claimed.id == row_id and claimed.title == "title"
    assert store.claim_due(now=T0, lease_until=T1) == []
    store.mark_retry(row_id, next_at=T1, error="down", done_urls=[0])
    assert store.claim_due(now=T0, lease_until=T1) == []
    (again,) = store.claim_due(now=T1, lease_until="2026-11-22T10:05:00.000000Z")
    assert again.attempts == 1 and again.done_urls == (0,) and again.last_error == "down"
    store.mark_failed(row_id, error="gave up", done_urls=[0])
    assert store.outbox("failed")[0].last_error == "gave up"
    assert store.requeue(now=T1) == 1
    assert store.outbox("pending")[0].id == row_id


def test_readonly_reader_sees_committed_writes_while_writer_is_open(tmp_path: Path) -> None:
    """A read-only connection (the CLI) reads what a concurrent writer (the daemon) committed."""
    writer = Store.open(tmp_path / "ow.db")
    reader = Store.open(tmp_path / "ow.db", readonly=True)
    writer.record("ace", diff({}, observe(order("a", "Pending")), baselined=False, now=T0), [], now=T0, full=True)
    assert [r.key for r in reader.orders()] == ["a"]
    with pytest.raises(StoreError):
        reader.set_next_poll("ace", T1)


def test_readonly_open_of_a_missing_database_says_what_to_do(tmp_path: Path) -> None:
    """Opening a database that does not exist read-only is a StoreError telling the user to poll first."""
    with pytest.raises(StoreError, match="orderwatch poll"):
        Store.open(tmp_path / "none.db", readonly=True)


def test_store_is_safe_to_share_between_threads(store: Store) -> None:
    """Concurrent writers from worker threads serialise on the store's lock without errors."""
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                store.enqueue_notice("ops", f"r{i}", "t", str(j), now=T0)
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.outbox()) == 80


def test_upgrading_rehashes_stored_orders_so_the_next_sweep_rewrites_nothing(tmp_path: Path) -> None:
    """A database from before XXH3 content hashes gets every hash recomputed from its stored JSON when opened, and
    every row its fingerprint, so the next sweep rewrites nothing and finds every order unchanged in memory."""
    import hashlib
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.apply(Database(conn, path), stop_before="0004_fast_sweeps")
    orders = [order(f"o{i}", "Paid") for i in range(12_001)]  # more than one batch of the migration
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO orders (source, key, raw_state, state, hash, raw, first_seen, changed_at)"
        " VALUES ('ace', ?, 'Paid', 'Paid', ?, ?, ?, ?)",
        [(o.key, hashlib.blake2b(o.raw_json, digest_size=12).hexdigest(), o.raw_json.decode(), T0, T0) for o in orders],
    )
    conn.execute("COMMIT")
    conn.close()

    store = Store.open(path)
    assert store.snapshot("ace") == {o.key: Known("Paid", "Paid", o.digest) for o in orders}
    assert store.known("ace", [o.key for o in orders]) == store.snapshot("ace")  # every row keyed
    again = diff(store.snapshot("ace"), observe(*orders), baselined=True, now=T1)
    assert not again.upserts and again.unchanged == len(orders)
    index = store.fingerprint_index("ace")  # every row got its tag and fingerprint: a sweep finds each unchanged
    assert all(index.unchanged(o.key, o.state, o.raw_json) for o in orders) and index.all_seen
    assert store.stored_states("ace") == ["Paid"]


def test_a_rewritten_row_carries_the_fingerprint_of_its_new_content(tmp_path: Path) -> None:
    """After an order changes, the index matches its new content and state only: going back to the old content is
    a miss, never taken for unchanged."""
    store = Store.open(tmp_path / "s.db")
    paid, finished, other = order("a", "Paid"), order("a", "Finished"), order("b", "Cancelled")
    store.record("ace", diff({}, observe(paid, other), baselined=False, now=T0), [], now=T0, full=True)
    store.record(
        "ace", diff(store.snapshot("ace"), observe(finished, other), baselined=True, now=T1), [], now=T1, full=False
    )
    index = store.fingerprint_index("ace")
    assert not index.unchanged(paid.key, paid.state, paid.raw_json)
    assert index.unchanged(finished.key, finished.state, finished.raw_json) and not index.all_seen
    assert store.stored_states("ace") == ["Cancelled", "Finished"] and store.stored_states("lsky") == []


def stored_prints(path: Path, source: str) -> list[tuple[int, int]]:
    """(tag, fingerprint) of every row of ``source``, computed afresh from the stored key, state and JSON."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT key, state, raw FROM orders WHERE source = ?", (source,)).fetchall()
    return sorted((tag_of(key), fingerprint(raw.encode(), state)) for key, state, raw in rows)


writes = st.dictionaries(st.sampled_from("abcdefghijkl"), st.sampled_from(["Paid", "Finished", "Refunded"]), max_size=6)
store_steps = st.one_of(
    st.tuples(st.just("record"), writes, st.sets(st.sampled_from("abcdefghijkl"), max_size=2)),
    st.tuples(st.just("write_rows"), writes, st.just(frozenset())),
    st.tuples(st.just("other connection"), writes, st.just(frozenset())),
    st.tuples(st.just("lend"), st.just({}), st.just(frozenset())),
    st.tuples(st.just("give back"), st.just({}), st.just(frozenset())),
    st.tuples(st.just("failed write"), writes, st.just(frozenset())),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(store_steps, max_size=14))
def test_the_kept_fingerprint_index_always_equals_one_read_afresh(steps: list[tuple[str, dict[str, str], Any]]) -> None:
    """Whatever is written, by this store (rows, removals, while a sweep holds the index or not, a write that fails)
    or by another connection, the index the store hands out holds exactly the stored rows' tags and fingerprints,
    and the one a sweep holds does not move under it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.db"
        store = Store.open(path)
        lent: tuple[Any, list[tuple[int, int]]] | None = None
        try:
            for n, (step, states, removals) in enumerate(steps):
                orders = [Order.build(k, s, s, {"id": k, "state": s, "n": n}) for k, s in states.items()]
                change = Change(events=(), upserts=tuple(orders), removals=tuple(sorted(removals)))
                if step == "record":
                    store.record("ace", change, [], now=T0, full=True)
                elif step == "write_rows":
                    store.write_rows("ace", orders, now=T0)
                elif step == "other connection":
                    other = Store.open(path)
                    other.write_rows("ace", orders, now=T0)
                    other.close()
                elif step == "failed write":  # fails inside the transaction, after the rows: all rolled back
                    with pytest.raises(IndexError):
                        store.record("ace", change, [Route("x", "r", (5,))], now=T0, full=True)
                elif step == "lend" and lent is None:
                    index = store.fingerprint_index("ace")
                    lent = (index, stored_prints(path, "ace"))
                elif step == "give back" and lent is not None:
                    store.fingerprints_done("ace", lent[0])
                    lent = None
                if lent is not None:
                    assert lent[0].entries() == lent[1]
                else:
                    index = store.fingerprint_index("ace")
                    assert index.entries() == stored_prints(path, "ace")
                    store.fingerprints_done("ace", index)
        finally:
            store.close()


def test_a_new_key_on_a_stored_keys_tag_makes_the_store_read_its_index_again(tmp_path: Path) -> None:
    """The kept index cannot hold two keys under one tag: when a written key's tag is already another stored key's,
    the store forgets it, and the index read afresh says it is ambiguous."""
    path = tmp_path / "s.db"
    store = Store.open(path)
    store.record("ace", Change(events=(), upserts=(order("a", "Paid"),), removals=()), [], now=T0, full=True)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE orders SET tag = ? WHERE key = 'a'", (tag_of("c"),))
    index = store.fingerprint_index("ace")  # another connection wrote: read afresh, then kept
    store.fingerprints_done("ace", index)
    assert index.entries() == [(tag_of("c"), fingerprint(order("a", "Paid").raw_json, "Paid"))]
    store.write_rows("ace", [order("c", "Paid")], now=T1)
    assert store.fingerprint_index("ace").ambiguous


def test_a_database_migrated_by_a_newer_orderwatch_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """A database carrying a schema step this version does not know is not touched: opening it, to write or to
    read, is SchemaTooNew naming the step and saying to upgrade orderwatch."""
    path = tmp_path / "ow.db"
    Store.open(path).close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('orderwatch', '0099_future', '')"
        )
    for readonly in (False, True):
        with pytest.raises(SchemaTooNew, match=r"0099_future.*upgrade orderwatch") as caught:
            Store.open(path, readonly=readonly)
        assert isinstance(caught.value, StoreError) and caught.value.migrations == ["0099_future"]


def test_two_stores_opening_a_new_database_at_once_apply_each_step_once(tmp_path: Path) -> None:
    """Stores opened at the same time on a new file (two processes starting together) both get the whole schema,
    each step applied once: the runner decides what is pending under the write lock."""
    path = tmp_path / "ow.db"
    opened: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(Store.open(path))
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with closing(sqlite3.connect(path)) as db:
        names = [name for (name,) in db.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert names == [name for name, _ in migrations.STEPS]
    for store in opened:
        store.close()


def test_rows_are_read_by_column_name_so_added_columns_shift_nothing(store: Store) -> None:
    """Columns a later migration adds to sources, events or outbox do not move any field of the rows read back."""
    store.record("ace", diff({}, observe(order("a", "Pending")), baselined=False, now=T0), [], now=T0, full=True)
    change = diff(store.snapshot("ace"), observe(order("a", "Paid")), baselined=True, now=T1)
    store.record("ace", change, [Route("ops", "r", (0,))], now=T1, full=True)
    before = (store.source_states(), store.events(), store.outbox(), store.orders())
    with closing(sqlite3.connect(store.path)) as db, db:
        for table in ("sources", "events", "outbox", "orders"):
            db.execute(f"ALTER TABLE {table} ADD COLUMN later TEXT DEFAULT 'x'")
    assert (store.source_states(), store.events(), store.outbox(), store.orders()) == before


def test_two_writers_recording_the_same_changes_record_and_notify_each_once(tmp_path: Path) -> None:
    """Two stores on one file (two polls of one source at once) that diffed the same snapshot: the second to record
    finds every event already recorded, so it stores none, queues no notice, and returns nothing."""
    path = tmp_path / "ow.db"
    first, second = Store.open(path), Store.open(path)
    base = diff({}, observe(order("a", "Pending"), order("b", "Paid")), baselined=False, now=T0)
    first.record("ace", base, [], now=T0, full=True)
    seen = observe(order("a", "Paid"), order("c", "Pending"))  # a moved, b vanished, c appeared
    changes = [diff(s.snapshot("ace"), seen, baselined=True, now=T1) for s in (first, second)]
    routes = [Route("ops", "r", (0,)), Route("ops", "r", (1,)), Route("ops", "r", (2,)), Route("all", "d", (0, 1, 2))]
    recorded = first.record("ace", changes[0], routes, now=T1, full=True)
    assert sorted(e.kind for e in recorded) == ["appeared", "transition", "vanished"]
    assert second.record("ace", changes[1], routes, now=T1, full=True) == []
    assert first.events() == recorded
    assert len(first.outbox()) == 4
    assert second.snapshot("ace") == {k: Known(s, s, order(k, s).digest) for k, s in (("a", "Paid"), ("c", "Pending"))}


def test_an_overtaken_writer_neither_repeats_nor_undoes_what_the_other_recorded(tmp_path: Path) -> None:
    """A writer whose sweep saw an older state records nothing the other already moved past: its transition is
    dropped with its row, a digest keeps only the events still true, and its silent rows leave the state alone."""
    path = tmp_path / "ow.db"
    fast, slow = Store.open(path), Store.open(path)
    base = diff({}, observe(order("a", "Pending"), order("b", "Pending")), baselined=False, now=T0)
    fast.record("ace", base, [], now=T0, full=True)
    stale = diff(slow.snapshot("ace"), observe(order("a", "Paid"), order("b", "Expired")), baselined=True, now=T1)
    fast.record(
        "ace",
        diff(fast.snapshot("ace"), observe(order("a", "Paid"), order("b", "Pending")), baselined=True, now=T1),
        [],
        now=T1,
        full=True,
    )
    moved = diff(fast.snapshot("ace"), observe(order("a", "Finished"), order("b", "Pending")), baselined=True, now=T1)
    fast.record("ace", moved, [], now=T1, full=True)
    (kept,) = slow.record("ace", stale, [Route("all", "d", (0, 1), digest=True)], now=T1, full=True)
    assert (kept.order_id, kept.raw_from, kept.raw_to) == ("b", "Pending", "Expired")
    assert [r.event_ids for r in slow.outbox()] == [(kept.id,)]
    assert slow.snapshot("ace")["a"].state == "Finished"
    slow.write_rows("ace", [Order.build("a", "Paid", "Paid", {"id": "a", "state": "Paid", "note": 1})], now=T1)
    slow.write_rows("ace", [order("z", "Pending")], now=T1)
    assert slow.snapshot("ace")["a"].state == "Finished" and "z" not in slow.snapshot("ace")


def bulk_row(o: Order, now: str = T0) -> BulkRow:
    """``o`` as a baseline in bulk appends it."""
    blob = o.raw_json
    return (
        "ace",
        o.key,
        o.raw_state,
        o.state,
        o.digest,
        tag_of(o.key),
        fingerprint(blob, o.state),
        o.created,
        now,
        now,
        blob.decode(),
    )


def baseline_in_bulk(store: Store, orders: list[Order]) -> None:
    """What a baseline sweep of an empty source asks of the store, up to its rows appended (not keyed yet)."""
    assert store.seen_begin("ace", bulk=True)
    store.append_rows("ace", [bulk_row(o) for o in orders])


def test_a_baseline_appended_in_bulk_is_keyed_once_its_sweep_has_all_its_pages(tmp_path: Path) -> None:
    """Rows a baseline appends in bulk are keyed when its sweep has all its pages, which counts the distinct orders
    exactly: an order appended twice is kept once, as last appended, also when another store keyed some of the
    rows meanwhile (as after a crash)."""
    store = Store.open(tmp_path / "ow.db")
    orders = [order(f"o{i}", "Paid") for i in range(1200)]
    baseline_in_bulk(store, orders)
    store.append_rows("ace", [bulk_row(order("o1", "Finished"), T1)])
    other = Store.open(tmp_path / "ow.db")  # keys the rows so far, as after a crash
    assert other.known("ace", ["o1"]) == {"o1": Known("Finished", "Finished", order("o1", "Finished").digest)}
    store.append_rows("ace", [bulk_row(order("new", "Pending"), T1), bulk_row(order("o2", "Paid"), T1)])
    assert other.known("ace", ["new"]) == {}  # appended after: not keyed yet
    assert store.key_bulk("ace") == 1201
    store.seen_end("ace")
    assert set(other.known("ace", ["new", "o2"])) == {"new", "o2"}
    assert len(other.snapshot("ace")) == 1201 and len(other.orders("ace")) == 1201


def test_a_baseline_in_bulk_overtaken_by_another_writers_baseline_drops_its_rows(tmp_path: Path) -> None:
    """When another writer takes the baseline of a source while a baseline in bulk sweeps it, the sweep's next rows
    are refused and those it appended but nobody keyed are dropped: no order is added silently after a baseline."""
    path = tmp_path / "ow.db"
    slow = Store.open(path)
    baseline_in_bulk(slow, [order("a", "Paid")])
    fast = Store.open(path)  # keys "a" when it opens: it is part of the baseline fast takes
    fast.record(
        "ace", Change(events=(), upserts=(order("b", "Paid"),), removals=(), baseline=True), [], now=T1, full=True
    )
    with pytest.raises(StoreError, match="another poll took the baseline"):
        slow.append_rows("ace", [bulk_row(order("z", "Pending"))])
    slow.seen_end("ace")
    assert set(fast.snapshot("ace")) == {"a", "b"} and len(fast.orders("ace")) == 2


def test_a_baseline_that_died_in_bulk_is_keyed_by_the_next_store_or_writer(tmp_path: Path) -> None:
    """Unkeyed rows of a sweep that never ended are keyed when a store opens the file, and before any other
    writer touches the source; a row that writer stored meanwhile under the same key wins, with no duplicate."""
    path = tmp_path / "ow.db"
    dead = Store.open(path)
    baseline_in_bulk(dead, [order("a", "Paid"), order("b", "Paid")])
    reopened = Store.open(path)
    assert set(reopened.known("ace", ["a", "b"])) == {"a", "b"}
    dying = Store.open(path)
    assert not dying.seen_begin("ace", bulk=True)  # not empty any more: an ordinary sweep
    dying.seen_end("ace")
    writer = Store.open(tmp_path / "other.db")
    baseline_in_bulk(writer, [order("x", "Paid"), order("y", "Paid")])
    meanwhile = Store.open(tmp_path / "other.db")
    meanwhile.record("ace", Change(events=(), upserts=(order("x", "Refunded"),), removals=()), [], now=T1, full=False)
    assert meanwhile.snapshot("ace") == {
        "x": Known("Refunded", "Refunded", order("x", "Refunded").digest),
        "y": Known("Paid", "Paid", order("y", "Paid").digest),
    }
    assert len(meanwhile.orders("ace")) == 2
    writer.seen_end("ace")
    assert len(meanwhile.orders("ace")) == 2


def test_a_baseline_in_bulk_whose_write_failed_keys_and_counts_what_it_kept(tmp_path: Path) -> None:
    """A bulk write that fails (here the connection refuses writes) keeps none of its rows, and the sweep still
    keys and counts exactly the rows it did keep."""
    path = tmp_path / "ow.db"
    Store.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    store = Store(conn, path)
    baseline_in_bulk(store, [order("a", "Paid"), order("b", "Paid")])
    conn.execute("PRAGMA query_only = ON")
    with pytest.raises(StoreError, match="readonly"):
        store.append_rows("ace", [bulk_row(order("x", "Paid")), bulk_row(order("a", "Refunded"))])
    conn.execute("PRAGMA query_only = OFF")
    store.append_rows("ace", [bulk_row(order("c", "Pending")), bulk_row(order("a", "Finished"))])
    assert store.key_bulk("ace") == 3
    store.seen_end("ace")
    assert store.snapshot("ace") == {
        "a": Known("Finished", "Finished", order("a", "Finished").digest),
        "b": Known("Paid", "Paid", order("b", "Paid").digest),
        "c": Known("Pending", "Pending", order("c", "Pending").digest),
    }
    assert len(store.orders("ace")) == 3
    store.close()


def test_a_new_database_gets_large_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    """A database the store creates has PAGE_SIZE pages; one created by an earlier version keeps its page size."""
    Store.open(tmp_path / "new.db").close()
    with closing(sqlite3.connect(tmp_path / "new.db")) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    with closing(sqlite3.connect(tmp_path / "old.db")) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
    store = Store.open(tmp_path / "old.db")
    store.close()
    with closing(sqlite3.connect(tmp_path / "old.db")) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096

"""A full sweep's sink: the in-memory fingerprint index, and the sink built on it, against the pure diff."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderwatch.core.diff import diff
from orderwatch.core.fingerprints import FingerprintIndex, fingerprint, tag_of
from orderwatch.core.model import CANONICAL_STATES, Change, Known, Observation, Order
from orderwatch.errors import StoreError
from orderwatch.store import Store
from orderwatch.store.sweep import BulkRow
from orderwatch.sweep.full import FullSweep

T0 = "2026-11-22T10:00:00.000000Z"
T1 = "2026-11-22T10:01:00.000000Z"
keys = st.sampled_from("abcdefghij")
states = st.sampled_from(CANONICAL_STATES[:4])


def order(key: str, state: str, extra: int = 0) -> Order:
    return Order.build(key, state.lower(), state, {"id": key, "state": state.lower(), "extra": extra})


def known(o: Order) -> Known:
    return Known(o.raw_state, o.state, o.digest)


def rows(orders: Mapping[str, Order]) -> list[tuple[int, int]]:
    return [(tag_of(o.key), fingerprint(o.raw_json, o.state)) for o in orders.values()]


def take(index: FingerprintIndex, page: list[Order]) -> list[int]:
    """The positions of ``page``'s misses."""
    return [i for i, o in enumerate(page) if not index.unchanged(o.key, o.state, o.raw_json)]


order_maps = st.dictionaries(keys, st.tuples(states, st.integers(0, 1))).map(
    lambda d: {k: order(k, s, e) for k, (s, e) in d.items()}
)
# a sweep's list: orders in some order, some met twice (pushed down a page by a newer order)
sweeps = st.lists(st.tuples(keys, states, st.integers(0, 1)), max_size=30).map(
    lambda items: [order(k, s, e) for k, s, e in items]
)


@st.composite
def pushed_down(draw: st.DrawFn) -> list[Order]:
    """A sweep's list in which a row met twice is the same both times (moved down a page, not changed)."""
    current = draw(order_maps)
    listed = [current[k] for k in draw(st.permutations(sorted(current)))]
    for i in sorted(draw(st.lists(st.integers(0, max(0, len(listed) - 1)), max_size=8)), reverse=True):
        if listed:
            listed.insert(min(len(listed), i + 2), listed[i])
    return listed


@given(order_maps, sweeps)
def test_index_misses_are_exactly_the_orders_that_differ_from_the_store(
    stored: dict[str, Order], page: list[Order]
) -> None:
    """unchanged() is false for an order unless its key, state and content match a stored order, and marks each
    matched stored order once; mark() and seen() agree with it."""
    index = FingerprintIndex.build(rows(stored), len(stored))
    assert not index.ambiguous and index.size == len(stored)
    misses = take(index, page)
    expected_misses = [i for i, o in enumerate(page) if o.key not in stored or stored[o.key] != o]
    assert misses == expected_misses
    matched = {o.key for i, o in enumerate(page) if i not in misses}
    assert len(matched) == index.marked and index.hits == len(page) - len(misses)
    assert all(index.seen(k) == (k in matched) for k in stored)
    assert index.all_seen == (matched == set(stored))
    for key in stored:
        assert index.mark(key) is (key not in matched)
    assert index.mark("not-stored") is None and index.all_seen


def test_two_stored_keys_with_one_tag_make_the_index_ambiguous() -> None:
    """A tag shared by two stored keys is detected, so that the sink does not trust the index."""
    fp = fingerprint(b"{}", "Paid")
    assert FingerprintIndex.build([(5, fp), (9, fp), (5, fp + 1)], 3).ambiguous
    assert not FingerprintIndex.build([(5, fp), (9, fp), (6, fp)], 3).ambiguous


def test_a_changed_state_with_the_same_content_hash_is_a_miss() -> None:
    """An order whose JSON is unchanged but whose canonical state is (a new state mapping) is not taken as
    unchanged."""
    paid = order("a", "Paid")
    index = FingerprintIndex.build(rows({"a": paid}), 1)
    remapped = Order(paid.key, paid.raw_state, "Finished", paid.raw_json, paid.digest)
    assert take(index, [remapped]) == [0] and index.marked == 0
    assert take(index, [paid]) == [] and index.marked == 1


def sweep(
    store: Store,
    seen: list[Order],
    *,
    page: int = 4,
    settle: int = 3,
    now: str = T1,
    parsed: bool = False,
    baselined: bool = True,
) -> Change:
    """Sweep ``seen`` through a FullSweep the way a full poll does, and record it. ``parsed``: each page goes
    through the sweep's ``skip`` first, as a parser asks it, and only its misses are handed over built."""

    async def run() -> tuple[int, Change]:
        async with FullSweep(store, "s", baselined=baselined, now=now) as sink:
            sink.SETTLE = settle
            sink.FLUSH = 2
            skip = sink.skip if parsed else None
            for i in range(0, len(seen), page):
                built = seen[i : i + page]
                if skip is not None:
                    built = [o for o in built if not skip(o.key, o.state, o.raw_json)]
                await sink(tuple(built))
            distinct = await sink.distinct()
            missing = await sink.unseen()
            return distinct, await sink.result(missing, proves_absence=True)

    distinct, change = anyio.run(run)
    assert distinct == len({o.key for o in seen})
    store.record("s", change, [], now=now, full=True)
    return change


def sweep_through_sink(
    path: Path,
    stored: Mapping[str, Order],
    seen: list[Order],
    *,
    tags: Mapping[str, int] | None = None,
    page: int = 4,
    settle: int = 3,
    parsed: bool = False,
) -> tuple[Change, dict[str, Known]]:
    """Store ``stored`` as a baseline (with the stored ``tags`` of some keys overwritten in the database file, to
    make them collide), then sweep ``seen`` through a FullSweep the way a full poll does."""
    store = Store.open(path)
    try:
        first = diff({}, Observation("s", dict(stored), complete=True, consistent=True), baselined=False, now=T0)
        store.record("s", first, [], now=T0, full=True)
        if tags:
            with closing(sqlite3.connect(path)) as db, db:
                db.executemany("UPDATE orders SET tag = ? WHERE key = ?", [(t, k) for k, t in tags.items()])
        change = sweep(store, seen, page=page, settle=settle, parsed=parsed)
        return change, store.snapshot("s")
    finally:
        store.close()


def events_of(change: Change) -> list[tuple[str, str, str | None, str | None]]:
    return sorted((e.order_id, e.kind, e.from_state, e.to_state) for e in change.events)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order_maps, pushed_down(), st.integers(1, 5), st.integers(1, 6), st.booleans())
def test_the_sink_finds_the_same_events_as_the_pure_diff_of_the_whole_list(
    stored: dict[str, Order], seen: list[Order], page: int, settle: int, parsed: bool
) -> None:
    """Page by page through the index and the store, in settling batches of any size, with unchanged orders left
    out by the parser or handed over built, the sweep makes the events and the snapshot that one diff of the whole
    list makes; a row met twice counts once."""
    whole = {o.key: o for o in seen}
    previous = {k: known(o) for k, o in stored.items()}
    expected = diff(previous, Observation("s", whole, complete=True, consistent=True), baselined=True, now=T1)
    with tempfile.TemporaryDirectory() as tmp:
        change, after = sweep_through_sink(Path(tmp) / "s.db", stored, seen, page=page, settle=settle, parsed=parsed)
    assert events_of(change) == events_of(expected)
    assert after == {k: known(o) for k, o in whole.items()}


def test_a_new_key_sharing_a_stored_keys_tag_does_not_hide_that_stored_order_vanishing(tmp_path: Path) -> None:
    """A new order whose tag is a stored order's tag is settled exactly: the stored order, gone from the list, is
    still reported vanished, and the new one appeared."""
    stored = {"a": order("a", "Paid"), "b": order("b", "Paid")}
    seen = [order("b", "Paid"), order("c", "Pending"), order("c", "Pending")]
    change, after = sweep_through_sink(tmp_path / "s.db", stored, seen, tags={"a": tag_of("c")})
    assert events_of(change) == [("a", "vanished", "Paid", None), ("c", "appeared", None, "Pending")]
    assert set(after) == {"b", "c"}


def test_an_ambiguous_index_falls_back_to_settling_every_order_exactly(tmp_path: Path) -> None:
    """With every key on one tag the sink trusts no fingerprint, and still finds each event once."""
    stored = {k: order(k, "Pending") for k in "abcd"}
    seen = [order("a", "Paid"), order("b", "Pending"), order("e", "Pending"), order("a", "Paid")]
    change, after = sweep_through_sink(tmp_path / "s.db", stored, seen, tags=dict.fromkeys("abcd", 3))
    assert events_of(change) == [
        ("a", "transition", "Pending", "Paid"),
        ("c", "vanished", "Pending", None),
        ("d", "vanished", "Pending", None),
        ("e", "appeared", None, "Pending"),
    ]
    assert set(after) == {"a", "b", "e"}


@pytest.mark.parametrize("settle", [1, 500])
def test_a_row_pushed_down_a_page_makes_one_event(tmp_path: Path, settle: int) -> None:
    """An order that changed and is met again on the next page (pushed down by a new one) makes one transition,
    whether the two sightings are settled together or apart."""
    stored = {k: order(k, "Pending") for k in "abc"}
    seen = [order("n", "Pending"), order("a", "Paid"), order("b", "Pending"), order("a", "Paid"), order("c", "Pending")]
    change, _ = sweep_through_sink(tmp_path / "s.db", stored, seen, page=2, settle=settle)
    assert events_of(change) == [("a", "transition", "Pending", "Paid"), ("n", "appeared", None, "Pending")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order_maps, st.lists(pushed_down(), min_size=2, max_size=4), st.integers(1, 5), st.booleans())
def test_sweep_after_sweep_on_the_kept_index_finds_what_the_pure_diff_finds(
    stored: dict[str, Order], sweeps: list[list[Order]], settle: int, parsed: bool
) -> None:
    """Sweeps one after another on one store (each on the index the store kept and updated with the last one's
    writes, vanished orders included) make the events one diff of each whole list against the snapshot makes."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "s.db")
        try:
            first = diff({}, Observation("s", dict(stored), complete=True, consistent=True), baselined=False, now=T0)
            store.record("s", first, [], now=T0, full=True)
            for n, seen in enumerate(sweeps):
                whole = {o.key: o for o in seen}
                previous = store.snapshot("s")
                now = f"2026-11-22T10:0{n + 1}:00.000000Z"
                expected = diff(
                    previous, Observation("s", whole, complete=True, consistent=True), baselined=True, now=now
                )
                change = sweep(store, seen, settle=settle, now=now, parsed=parsed)
                assert events_of(change) == events_of(expected)
                assert store.snapshot("s") == {k: known(o) for k, o in whole.items()}
        finally:
            store.close()


class ThreadNoting(Store):
    """A store that notes which thread makes each of the calls a full sweep makes."""

    threads: set[int]

    def seen_begin(self, source: str, *, bulk: bool = False) -> bool:
        self.threads.add(threading.get_ident())
        return super().seen_begin(source, bulk=bulk)

    def known(self, source: str, keys: Sequence[str]) -> dict[str, Known]:
        self.threads.add(threading.get_ident())
        return super().known(source, keys)

    def seen_add(self, source: str, keys: Sequence[str]) -> int:
        self.threads.add(threading.get_ident())
        return super().seen_add(source, keys)

    def write_rows(self, source: str, orders: Sequence[Order], *, now: str) -> None:
        self.threads.add(threading.get_ident())
        super().write_rows(source, orders, now=now)

    def append_rows(self, source: str, rows: Sequence[BulkRow]) -> None:
        self.threads.add(threading.get_ident())
        super().append_rows(source, rows)

    def key_bulk(self, source: str) -> int:
        self.threads.add(threading.get_ident())
        return super().key_bulk(source)

    def unseen(self, source: str, *, seen: Callable[[str], bool] | None = None) -> dict[str, Known]:
        self.threads.add(threading.get_ident())
        return super().unseen(source, seen=seen)

    def seen_end(self, source: str) -> None:
        self.threads.add(threading.get_ident())
        super().seen_end(source)


def test_every_store_call_of_a_full_sweep_is_made_on_one_thread_off_the_event_loop(tmp_path: Path) -> None:
    """A sweep's store calls, from its start to its end, are all made on one thread that is not the event loop's."""
    store = ThreadNoting.open(tmp_path / "s.db")
    store.threads = set()
    sweep(store, [order(k, "Pending") for k in "abcdef"], page=2, now=T0, baselined=False)
    baseline_threads, store.threads = store.threads, set()
    seen = [order("a", "Paid"), order("x", "Pending"), *(order(k, "Pending") for k in "bcd")]
    change = sweep(store, seen, page=2, settle=1)
    assert events_of(change) == [
        ("a", "transition", "Pending", "Paid"),
        ("e", "vanished", "Pending", None),
        ("f", "vanished", "Pending", None),
        ("x", "appeared", None, "Pending"),
    ]
    assert len(store.threads) == len(baseline_threads) == 1
    assert threading.get_ident() not in store.threads | baseline_threads
    store.close()


def test_a_sweep_left_by_an_error_is_ended_and_infers_nothing(tmp_path: Path) -> None:
    """A sweep whose block fails is ended in the store all the same (its seen keys forgotten), and the next sweep
    finds exactly what changed; nothing was reported vanished for the orders the failed one did not reach."""
    store = Store.open(tmp_path / "s.db")
    stored = {k: order(k, "Pending") for k in "abc"}
    first = diff({}, Observation("s", stored, complete=True, consistent=True), baselined=False, now=T0)
    store.record("s", first, [], now=T0, full=True)

    async def failing() -> None:
        async with FullSweep(store, "s", baselined=True, now=T1) as sink:
            await sink((order("a", "Paid"),))
            await sink.distinct()
            raise RuntimeError("the poll broke off")

    with pytest.raises(RuntimeError, match="broke off"):
        anyio.run(failing)
    with pytest.raises(StoreError, match="no sweep"):
        store.seen_add("s", ["a"])
    assert store.events() == []
    change = sweep(store, [order("a", "Paid"), order("b", "Pending"), order("c", "Pending")])
    assert events_of(change) == [("a", "transition", "Pending", "Paid")]
    store.close()


def test_a_baseline_in_bulk_counts_an_order_met_twice_once_and_keeps_its_last_sighting(tmp_path: Path) -> None:
    """A baseline into an empty source appends its pages as they come, across several bulk writes: an order met
    again further down (pushed by a new one) counts once, and its last sighting is the one stored."""
    store = Store.open(tmp_path / "s.db")
    seen = [order(f"o{i}", "Pending") for i in range(12)]
    seen.insert(9, order("o3", "Paid", extra=1))  # o3 met again, changed meanwhile
    seen.insert(5, order("o1", "Pending"))  # o1 met again, unchanged

    async def run() -> tuple[int, Change]:
        async with FullSweep(store, "s", baselined=False, now=T0) as sink:
            sink.BULK = 4
            assert sink.skip is None  # nothing stored: no order can be unchanged
            for i in range(0, len(seen), 3):
                await sink(tuple(seen[i : i + 3]))
            distinct = await sink.distinct()
            return distinct, await sink.result(await sink.unseen(), proves_absence=True)

    distinct, change = anyio.run(run)
    assert distinct == 12 and change.baseline and change.events == () and change.upserts == ()
    store.record("s", change, [], now=T0, full=True)
    expected = {f"o{i}": known(order(f"o{i}", "Pending")) for i in range(12)}
    expected["o3"] = known(order("o3", "Paid", extra=1))
    assert store.snapshot("s") == expected and len(store.orders("s")) == 12
    store.close()

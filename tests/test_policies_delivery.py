"""Notification policies in process, with a real store, the real deliverer and a real json:// webhook: how silences
narrow digests and match rules, what quiet hours hold, summaries queued once, migration 0009 and the clock file."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from orderwatch import clock
from orderwatch.core.diff import diff
from orderwatch.core.quiet import QuietHours
from orderwatch.core.rules import Channel, Rule
from orderwatch.core.schedule import parse_schedule
from orderwatch.core.secret import Secret
from orderwatch.core.summary import Summary
from orderwatch.delivery import summaries
from orderwatch.delivery.deliverer import Deliverer
from orderwatch.sources import make_source
from orderwatch.store import Store, migrations
from orderwatch.store.db import Database
from tests.receivers import WebhookReceiver
from tests.unit.store.test_store import Route, observe, order

T0 = "2026-11-23T10:00:00.000000Z"
T1 = "2026-11-23T10:01:00.000000Z"
NIGHT = QuietHours(time(22), time(7), "UTC")


def record(store: Store, keys: list[str], to: str, routes: list[Route]) -> list[int]:
    """A baseline of ``keys`` Pending, then all of them moved to ``to`` with ``routes``; the event ids."""
    store.record(
        "ace", diff({}, observe(*(order(k, "Pending") for k in keys)), baselined=False, now=T0), [], now=T0, full=True
    )
    change = diff(store.snapshot("ace"), observe(*(order(k, to) for k in keys)), baselined=True, now=T1)
    return [e.id or 0 for e in store.record("ace", change, routes, now=T1, full=True)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A new database."""
    opened = Store.open(tmp_path / "ow.db")
    yield opened
    opened.close()


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    """A json:// webhook receiver on loopback."""
    with WebhookReceiver(path="/hooks/inproc") as receiver:
        yield receiver


def deliverer(
    store: Store, hook: WebhookReceiver, rules: list[Rule], now: str, quiet: QuietHours | None = None
) -> Deliverer:
    """The deliverer of channel "ops" (the webhook) at the moment ``now``."""
    channels = {"ops": Channel("ops", (Secret(hook.url_for_apprise),), 10, quiet)}
    return Deliverer(store, channels, rules, now=lambda: now)


@pytest.mark.anyio
async def test_a_silence_of_one_order_narrows_a_digest_to_the_other_events(store: Store, hook: WebhookReceiver) -> None:
    """A digest of three events, one order silenced: the digest of the other two is sent; the stopped event is
    noted with its silence and channel."""
    rules = [Rule("paid", ("ops",), to=("Paid",))]
    ids = record(store, ["a", "b", "c"], "Paid", [Route("ops", "digest", (0, 1, 2), digest=True)])
    silence = store.add_silence("ace", order_id="b", rule=None, comment="", now=T0, ends="2026-11-23T12:00:00.000000Z")
    report = await deliverer(store, hook, rules, T1).deliver_due()
    assert report.sent == 1
    [message] = hook.wait_for(1)
    assert message.body["title"] == "[orderwatch] 2 order changes"
    [row] = store.outbox()
    assert (row.status, row.event_ids) == ("sent", (ids[0], ids[2]))
    assert store.silenced_events(ids) == {ids[1]: [("ops", silence)]}


@pytest.mark.anyio
async def test_a_silence_of_a_rule_stops_its_digests_events_and_not_other_sources(
    store: Store, hook: WebhookReceiver
) -> None:
    """--rule matches a digest's events the rule selects for the channel; a silence of another source stops nothing."""
    rules = [Rule("paid", ("ops",), to=("Paid",))]
    record(store, ["a", "b"], "Paid", [Route("ops", "digest", (0, 1), digest=True)])
    store.add_silence("images", order_id=None, rule=None, comment="", now=T0, ends="2026-11-24T00:00:00.000000Z")
    rule_silence = store.add_silence(
        "ace", order_id=None, rule="paid", comment="", now=T0, ends="2026-11-24T00:00:00.000000Z"
    )
    report = await deliverer(store, hook, rules, T1).deliver_due()
    assert (report.sent, hook.requests) == (0, [])
    [row] = store.outbox()
    assert row.status == "silenced"
    assert store.holds([row.id]) == {row.id: (None, rule_silence)}


@pytest.mark.anyio
async def test_an_expired_silence_stops_nothing_and_ends_once(store: Store, hook: WebhookReceiver) -> None:
    """A silence expired by hand no longer stops notifications, and is reported as ended exactly once."""
    rules = [Rule("paid", ("ops",), to=("Paid",))]
    record(store, ["a"], "Paid", [Route("ops", "paid", (0,))])
    silence = store.add_silence("ace", order_id=None, rule=None, comment="", now=T0, ends="2026-11-24T00:00:00.000000Z")
    assert store.expire_silence(silence, now=T0)
    assert [s.id for s in store.newly_ended_silences(now=T1)] == [silence]
    assert store.newly_ended_silences(now=T1) == []
    assert (await deliverer(store, hook, rules, T1).deliver_due()).sent == 1
    assert not store.expire_silence(silence, now=T1)


@pytest.mark.anyio
async def test_quiet_hours_hold_a_health_alert_and_release_it_on_its_own(store: Store, hook: WebhookReceiver) -> None:
    """A health alert at 23:00 waits until 07:00; then it goes out as it was, not folded into a digest."""
    night, morning = "2026-11-23T23:00:00.000000Z", "2026-11-24T07:00:00.000000Z"
    row_id = store.enqueue_notice("ops", "health", "source down", "ace fails", now=night)
    record(store, ["a"], "Paid", [Route("ops", "paid", (0,))])
    rules = [Rule("paid", ("ops",), to=("Paid",))]
    assert (await deliverer(store, hook, rules, night, NIGHT).deliver_due()).sent == 0
    assert {r.id: r.next_attempt_at for r in store.outbox()}[row_id] == morning
    assert (await deliverer(store, hook, rules, morning, NIGHT).deliver_due()).sent == 2
    assert sorted(r.body["title"] for r in hook.wait_for(2)) == ["[ace] order a Pending → Paid", "source down"]


@pytest.mark.anyio
async def test_more_rows_than_one_claim_wait_out_quiet_hours_and_leave_in_one_digest(
    store: Store, hook: WebhookReceiver
) -> None:
    """150 notices held overnight (more than one delivery step claims) leave at 07:00 as one digest of 150."""
    night, morning = "2026-11-23T23:00:00.000000Z", "2026-11-24T07:00:00.000000Z"
    keys = [f"o{i:03}" for i in range(150)]
    record(store, keys, "Paid", [Route("ops", "paid", (i,)) for i in range(150)])
    rules = [Rule("paid", ("ops",), to=("Paid",))]
    at_night = deliverer(store, hook, rules, night, NIGHT)
    assert [(await at_night.deliver_due()).sent for _ in range(3)] == [0, 0, 0]
    assert {r.next_attempt_at for r in store.outbox()} == {morning}
    report = await deliverer(store, hook, rules, morning, NIGHT).deliver_due()
    [message] = hook.wait_for(1)
    assert message.body["title"] == "[orderwatch] 150 order changes during quiet hours"
    assert report.sent == 1
    assert {r.status for r in store.outbox()} == {"sent"}


@pytest.mark.anyio
async def test_a_summary_period_is_queued_once_and_a_new_summary_waits_for_its_next_period(store: Store) -> None:
    """The first sight of a summary queues nothing; its next period is queued once however often asked, with the
    refunds' amounts as the source's adapter reads them."""
    record(store, ["a", "b"], "Refunded", [])
    src = make_source("ace", "acedata", "https://api.example.com")
    daily = Summary("daily", "ops", parse_schedule("daily 08:00"), ("ace",))
    before = datetime(2026, 11, 23, 9, tzinfo=UTC)
    assert summaries.queue_due(store, [daily], {"ace": src}, before) == []
    due = datetime(2026, 11, 24, 8, tzinfo=UTC)
    [queued] = summaries.queue_due(store, [daily], {"ace": src}, due)
    assert summaries.queue_due(store, [daily], {"ace": src}, due) == []
    [row] = store.outbox()
    assert (row.id, row.rule, row.title) == (
        queued.outbox_id,
        "summary:daily",
        "[orderwatch] daily: yesterday (2026-11-24)",
    )
    assert row.body == "Yesterday on ace: 2 refunded (USD 3.0)"  # each order's price, read by the acedata adapter


def test_migration_0009_keeps_every_outbox_row_and_allows_silenced(tmp_path: Path) -> None:
    """A database at 0007 with outbox rows keeps them (ids, statuses) through 0009_policies, which then accepts
    the status "silenced" and adds its tables."""
    path = tmp_path / "old.db"
    db = Database.connect(path, readonly=False, timeout=5)
    migrations.apply(db, stop_before="0009_policies")
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO outbox (channel, rule, event_ids, status, created_at, next_attempt_at)"
            " VALUES ('ops', 'r', '[1]', 'sent', 'x', 'x'), ('ops', 'r', '[2]', 'failed', 'y', 'y')"
        )
    db.close()
    Store.open(path).close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT id, status, event_ids FROM outbox ORDER BY id").fetchall() == [
            (1, "sent", "[1]"),
            (2, "failed", "[2]"),
        ]
        conn.execute("UPDATE outbox SET status = 'silenced' WHERE id = 1")
        names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
        assert {"silences", "silenced_events", "summary_runs", "outbox_due"} <= names


def test_the_clock_file_sets_the_time_and_lets_it_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$ORDERWATCH_CLOCK_FILE: now() is the written time plus the time since; no time in it is a ClockError."""
    path = tmp_path / "now.txt"
    path.write_text("2026-11-23T22:59:55+01:00", encoding="utf-8")
    monkeypatch.setenv(clock.CLOCK_FILE_VARIABLE, str(path))
    written = datetime(2026, 11, 23, 21, 59, 55, tzinfo=UTC)
    assert 0 <= (clock.now() - written).total_seconds() < 60
    path.write_text("soon", encoding="utf-8")
    os.utime(path, ns=(1, 1))
    with pytest.raises(clock.ClockError, match="does not hold an ISO 8601 time"):
        clock.now()
    monkeypatch.delenv(clock.CLOCK_FILE_VARIABLE)
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 60


def test_a_reader_of_a_database_not_yet_migrated_to_0009_sees_no_silences(tmp_path: Path) -> None:
    """The CLI's read-only queries of policies (changes, outbox, silence list) answer empty on a database a
    daemon of the previous version still runs on, instead of failing."""
    path = tmp_path / "old.db"
    db = Database.connect(path, readonly=False, timeout=5)
    migrations.apply(db, stop_before="0009_policies")
    db.close()
    reader = Store.open(path, readonly=True)
    try:
        assert (reader.silences(), reader.silenced_events([1]), reader.holds([1])) == ([], {}, {})
    finally:
        reader.close()

"""Notification policies end to end: in the real daemon (``orderwatch run`` in a subprocess) against the
simulator and a real json:// webhook receiver, its wall clock moved by ``$ORDERWATCH_CLOCK_FILE`` (no sleeping
through hours): quiet hours that defer into one digest, urgent rules that pass, silences from the CLI, and
scheduled summaries sent once per period across kill -9.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orderwatch.simulator import SimServer, Simulator
from tests.conftest import Ran, run_cli
from tests.receivers import WebhookReceiver
from tests.test_daemon import TIMEOUT, Daemon, daemon_config, hook, start, titles, wait_until

__all__ = ["hook", "start"]  # the fixtures of the daemon's tests, used here too

QUIET = 'digest_over = 1000\nquiet = "22:00-07:00"\ntimezone = "Europe/Berlin"\n'


@dataclass
class World:
    """The simulator, the webhook, the clock file and a way to start daemons on it, for one test."""

    tmp_path: Path
    sim: Simulator
    server: SimServer
    hook: WebhookReceiver
    start: Callable[..., Daemon]
    config: Path

    @property
    def clock_file(self) -> Path:
        """The file every process of the test reads the current time from."""
        return self.tmp_path / "now.txt"

    def set_clock(self, when: str) -> None:
        """Make ``when`` (ISO 8601) the current time of the daemon and the CLI, from now on."""
        part = self.clock_file.with_suffix(".part")
        part.write_text(when, encoding="utf-8")
        part.replace(self.clock_file)

    def launch(self) -> Daemon:
        """A daemon on the config and the fake clock (killed at the end of the test if still running)."""
        return self.start(self.config, {"ORDERWATCH_CLOCK_FILE": str(self.clock_file)})

    def begin(self, when: str, *, quiet: bool = False, extra: str = "") -> Daemon:
        """The clock at ``when``, a daemon watching "ace" into the webhook (with quiet hours 22:00-07:00 Berlin
        time when ``quiet``), its baseline taken."""
        self.set_clock(when)
        text = daemon_config(self.server.url, self.tmp_path / "ow.db", self.hook) + extra
        self.config.write_text(text.replace("digest_over = 1000\n", QUIET) if quiet else text, encoding="utf-8")
        daemon = self.launch()
        daemon.wait_log("polled", source="ace", baseline=True)
        return daemon

    def cli(self, *args: str) -> Ran:
        """The real CLI on the fake clock (tables 250 columns wide, so that no cell is folded)."""
        return run_cli(self.config, *args, env={"ORDERWATCH_CLOCK_FILE": str(self.clock_file), "COLUMNS": "250"})

    def outbox(self) -> list[dict[str, Any]]:
        """``orderwatch outbox --format json``, parsed."""
        ran = self.cli("outbox", "--format", "json")
        assert ran.code == 0, ran.err
        rows: list[dict[str, Any]] = json.loads(ran.out)
        return rows

    def changes(self) -> list[dict[str, Any]]:
        """``orderwatch changes --format json``, parsed."""
        ran = self.cli("changes", "--format", "json")
        assert ran.code == 0, ran.err
        events: list[dict[str, Any]] = json.loads(ran.out)
        return events

    def order_of_message(self, message: Any) -> str:
        """The order a single-event message (titled "event ID") is about."""
        ids = {e["id"]: e["order_id"] for e in self.changes()}
        return str(ids[int(message.body["title"].split()[1])])

    def pending(self, n: int) -> list[str]:
        """Keys of ``n`` pending orders of the acedata API."""
        return [str(o["id"]) for o in self.sim.orders("ace") if o["state"] == "Pending"][:n]


@pytest.fixture
def world(
    tmp_path: Path, sim: Simulator, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> World:
    """One test's world."""
    return World(tmp_path, sim, server, hook, start, tmp_path / "orderwatch.toml")


def test_notices_due_in_quiet_hours_leave_at_seven_in_one_digest(world: World) -> None:
    """Changes at 23:00 Berlin time are recorded and wait (outbox says until 07:00); at 07:00 the channel gets ONE
    digest of all of them, and every row is sent."""
    daemon = world.begin("2026-11-23T23:00:00+01:00", quiet=True)
    keys = world.pending(3)
    for key, state in zip(keys, ("Paid", "Paid", "Expired"), strict=True):
        world.sim.set_state("ace", key, state)
    daemon.wait_log("held for quiet hours", n=3)
    assert world.hook.requests == []
    rows = world.outbox()
    assert [(r["status"], r["why"]) for r in rows] == [("pending", "quiet hours until 07:00 Europe/Berlin")] * 3
    assert sorted(e["order_id"] for e in world.changes()) == sorted(keys)

    mark = daemon.mark()
    world.set_clock("2026-11-24T07:00:00+01:00")
    [digest] = world.hook.wait_for(1, timeout=TIMEOUT)
    daemon.wait_log("delivered", after=mark)
    assert digest.body["title"] == "[orderwatch] 3 order changes during quiet hours"
    message = digest.body["message"]
    assert "Pending → Paid: 2" in message and "Pending → Expired: 1" in message
    wait_until(lambda: all(r["status"] == "sent" for r in world.outbox()), "every held row marked sent")
    assert len(world.hook.requests) == 1
    assert daemon.stop() == 0


def test_an_urgent_rule_passes_through_quiet_hours(world: World) -> None:
    """At 23:00 a refund of at least min_amount (an urgent rule's event) is sent at once; a smaller refund and a
    payment in the same poll wait."""
    by_price = sorted((float(o["price"]), str(o["id"])) for o in world.sim.orders("ace") if o["state"] == "Pending")
    (small_price, small), (big_price, big) = by_price[0], by_price[-1]
    assert small_price < big_price
    paid = by_price[1][1]
    extra = '\n[[rules]]\nname = "big-refunds"\nto = ["Refunded"]\nchannels = ["hook"]\nurgent = true\n'
    extra += f'amount = "price"\nmin_amount = "{big_price}"\n'
    daemon = world.begin("2026-11-23T23:00:00+01:00", quiet=True, extra=extra)
    world.sim.set_state("ace", big, "Refunded")
    world.sim.set_state("ace", small, "Refunded")
    world.sim.set_state("ace", paid, "Paid")
    [urgent] = world.hook.wait_for(1, timeout=TIMEOUT)
    daemon.wait_log("held for quiet hours", n=2)
    events = {e["id"]: e["order_id"] for e in world.changes()}
    assert world.order_of_message(urgent) == big
    held = [r for r in world.outbox() if r["status"] == "pending"]
    assert sorted(events[i] for r in held for i in r["event_ids"]) == sorted([small, paid])
    assert {r["why"] for r in held} == {"quiet hours until 07:00 Europe/Berlin"}
    assert len(world.hook.requests) == 1
    assert daemon.stop() == 0


def test_a_silence_from_the_cli_stops_the_next_notification_and_its_expiry_resumes_them(world: World) -> None:
    """silence add: the running daemon sends nothing for the source (events recorded, changes says silenced by #1,
    outbox says why); silence expire: the next change is sent, and the log says the silence ended, once."""
    daemon = world.begin("2026-11-23T12:00:00Z")
    added = world.cli("silence", "add", "--source", "ace", "--for", "2h", "--comment", "migration")
    assert added.code == 0, added.err
    assert added.out.startswith("silence #1 added: source ace until 2026-11-23T14:00:")
    listed = json.loads(world.cli("silence", "list", "--format", "json").out)
    assert [(s["id"], s["active"], s["comment"]) for s in listed] == [(1, True, "migration")]

    first, second = world.pending(2)
    world.sim.set_state("ace", first, "Paid")
    daemon.wait_log("notification silenced", silence=1)
    [row] = world.outbox()
    assert (row["status"], row["why"], row["silenced_by"]) == ("silenced", "silenced by #1", 1)
    [event] = world.changes()
    assert (event["order_id"], event["silenced"]) == (first, [{"channel": "hook", "silence": 1}])
    assert "#1 (hook)" in world.cli("changes", "--format", "table").out

    expired = world.cli("silence", "expire", "1")
    assert expired.code == 0, expired.err
    daemon.wait_log("silence ended", silence=1, by_hand=True)
    world.sim.set_state("ace", second, "Paid")
    [sent] = world.hook.wait_for(1, timeout=TIMEOUT)
    assert world.order_of_message(sent) == second
    assert len(world.hook.requests) == 1
    assert len(daemon.logs("silence ended")) == 1
    assert world.cli("silence", "expire", "1").code == 1
    assert daemon.stop() == 0


def test_a_silence_that_runs_out_is_logged_once_and_notifications_resume(world: World) -> None:
    """A silence of one order for 2h: other orders are sent meanwhile; 3 h later it has ended (logged once, by
    time) and the order's next change is sent."""
    daemon = world.begin("2026-11-23T12:00:00Z")
    quiet_order, other = world.pending(2)
    ran = world.cli("silence", "add", "--source", "ace", "--order", quiet_order, "--for", "2h")
    assert ran.code == 0, ran.err
    world.sim.set_state("ace", quiet_order, "Paid")
    world.sim.set_state("ace", other, "Paid")
    daemon.wait_log("notification silenced", silence=1)
    [sent] = world.hook.wait_for(1, timeout=TIMEOUT)
    world.set_clock("2026-11-23T15:00:00Z")
    daemon.wait_log("silence ended", silence=1, by_hand=False)
    world.sim.set_state("ace", quiet_order, "Finished")
    world.hook.wait_for(2, timeout=TIMEOUT)
    assert len(daemon.logs("silence ended")) == 1
    assert titles(world.hook)[0] == sent.body["title"]
    assert daemon.stop() == 0


def test_a_daily_summary_leaves_once_per_period_across_kill_9_at_the_moment_it_is_due(world: World) -> None:
    """Changes on Nov 23; "daily 08:00" to a channel quiet 08:00-08:30 (so that nothing can be sent before the kill):
    the daemon is killed -9 as the Nov 24 summary is queued, restarted, queues nothing again, and at 08:30 the
    channel gets that summary once ("Yesterday on ace: 2 paid, 1 expired"); the next day's comes once too, and a
    third daemon queues neither again."""
    extra = f'\n[channels.morning]\nurls = ["{world.hook.url_for_apprise}"]\nquiet = "08:00-08:30"\n'
    extra += '\n[[summaries]]\nname = "daily"\nchannel = "morning"\nschedule = "daily 08:00"\nsources = ["ace"]\n'
    daemon = world.begin("2026-11-23T12:00:00Z", extra=extra)
    daemon.wait_log("summary scheduled", summary="daily", first="2026-11-24T08:00:00.000000Z")
    for key, state in zip(world.pending(3), ("Paid", "Paid", "Expired"), strict=True):
        world.sim.set_state("ace", key, state)
    world.hook.wait_for(3, timeout=TIMEOUT)

    world.set_clock("2026-11-24T07:59:59Z")
    daemon.wait_log("summary queued", summary="daily", period="2026-11-24")
    daemon.kill()
    again = world.launch()
    again.wait_log("started")
    [row] = [r for r in world.outbox() if r["rule"] == "summary:daily"]
    assert row["status"] == "pending"
    world.set_clock("2026-11-24T08:30:00Z")
    wait_until(lambda: world.outbox()[-1]["status"] == "sent", "the summary sent")
    summaries = [r for r in world.hook.requests if str(r.body.get("title", "")).startswith("[orderwatch] daily")]
    assert [(r.body["title"], r.body["message"]) for r in summaries] == [
        ("[orderwatch] daily: yesterday (2026-11-24)", "Yesterday on ace: 2 paid, 1 expired")
    ]
    assert again.logs("summary queued") == []

    world.set_clock("2026-11-25T08:30:00Z")
    again.wait_log("summary queued", summary="daily", period="2026-11-25")
    wait_until(
        lambda: len([r for r in world.hook.requests if "(2026-11-25)" in str(r.body.get("title"))]) == 1, "day 2"
    )
    assert again.stop() == 0
    third = world.launch()
    third.wait_log("started")
    mark = third.mark()
    third.wait_log("polled", source="ace", after=mark)
    assert third.logs("summary queued") == []
    assert third.stop() == 0
    runs = [r for r in world.outbox() if r["rule"] == "summary:daily"]
    assert [r["status"] for r in runs] == ["sent", "sent"]


def test_a_reload_that_ends_quiet_hours_sends_what_waited_for_them(world: World) -> None:
    """At 23:00 a change waits for 07:00; SIGHUP with the channel's quiet hours removed sends it at once."""
    daemon = world.begin("2026-11-23T23:00:00+01:00", quiet=True)
    [key] = world.pending(1)
    world.sim.set_state("ace", key, "Paid")
    daemon.wait_log("held for quiet hours")
    assert world.hook.requests == []
    world.config.write_text(world.config.read_text(encoding="utf-8").replace(QUIET, "digest_over = 1000\n"))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log("config reloaded")
    [sent] = world.hook.wait_for(1, timeout=TIMEOUT)
    assert world.order_of_message(sent) == key
    assert daemon.stop() == 0

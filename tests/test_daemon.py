"""``orderwatch run``: the real daemon in a subprocess against the simulator and a real json:// webhook receiver.

Each test starts ``python -m orderwatch --config PATH run`` with JSON logs on stderr, which a reader thread collects
so a test can wait (with a bound) for "polled", "delivered", "stopping"… The metrics exporter is also tested here,
in process, on a real loopback socket.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orderwatch.config import load_config
from orderwatch.core.model import Event
from orderwatch.delivery.deliverer import DeliveryReport
from orderwatch.errors import ConfigError
from orderwatch.service.daemon import (
    CANCEL_STALL,
    DELIVERY_STALL,
    GRACE_PERIOD,
    POLL_SLACK,
    SCHEDULER_SLACK,
    poll_limit,
)
from orderwatch.service.daemon import Daemon as DaemonCore
from orderwatch.service.metrics import Metrics, address, bind, parse_listen, serve
from orderwatch.simulator import SimServer, Simulator, run_clock
from orderwatch.store import Store
from orderwatch.sweep.poller import Outcome, PollResult, poll_budget
from tests.conftest import ACE_TOKEN, LSKY_TOKEN, run_cli
from tests.receivers import WebhookReceiver

TIMEOUT = 20.0  # the bound of every wait for the daemon
# argv: SOFT PROGRAM ARG...: run PROGRAM (same pid) with its soft RLIMIT_NOFILE lowered to SOFT
WITH_NOFILE = (
    "import os, resource, sys; soft = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)
SOURCE_OF_API = {"ace": "ace", "lsky": "images"}


# ---- helpers --------------------------------------------------------------------------------------------------------


def wait_until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        pause.wait(0.02)


class Hook(Protocol):
    """A webhook receiver the daemon can post to."""

    @property
    def url_for_apprise(self) -> str:
        """Its json:// URL."""
        ...


def daemon_config(
    url: str,
    database: Path,
    hook: Hook,
    *,
    sources: tuple[str, ...] = ("ace",),
    interval: str = "1s",
    extra: str = "",
) -> str:
    """A config watching the simulator's ``sources`` ("ace", "images"), every event to ``hook``, JSON logs."""
    text = f'database = "{database.as_posix()}"\n\n[defaults]\ninterval = "{interval}"\njitter = "0s"\ntimeout = "5s"\n'
    if "ace" in sources:
        text += f'\n[sources.ace]\nkind = "acedata"\nbase_url = "{url}"\ntoken = "{ACE_TOKEN}"\npage_size = 10\n'
    if "images" in sources:
        text += f'\n[sources.images]\nkind = "lsky"\nbase_url = "{url}"\ntoken = "{LSKY_TOKEN}"\npage_size = 10\n'
    text += f'\n[channels.hook]\nurls = ["{hook.url_for_apprise}"]\ndigest_over = 1000\n'
    text += (
        '\n[[rules]]\nname = "everything"\nevents = ["transition", "appeared", "vanished"]\nchannels = ["hook"]\n'
        'title = "event {{ event.id }}"\n'
    )
    text += '\n[delivery]\ninterval = "200ms"\nretry_initial = "200ms"\nretry_max = "1s"\n'
    text += '\n[log]\nformat = "json"\n'
    return text + extra


class Daemon:
    """``orderwatch run`` in a subprocess; its JSON log lines are collected as they come."""

    def __init__(self, config: Path, env: dict[str, str] | None = None, *, nofile: int | None = None) -> None:
        """Start it; ``nofile`` lowers its soft limit of open files (RLIMIT_NOFILE) before it starts."""
        argv = [sys.executable, "-m", "orderwatch", "--config", str(config), "run"]
        if nofile is not None:
            argv = [sys.executable, "-c", WITH_NOFILE, str(nofile), *argv]
        clean = {
            k: v
            for k, v in os.environ.items()
            if k not in {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "ORDERWATCH_CONFIG"}
            and not k.endswith("_DIRECTORY")
        }
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**clean, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="daemon-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                line = json.loads(text)
            except ValueError:
                line = {"event": text, "raw": True}
            if not isinstance(line, dict):
                line = {"event": text, "raw": True}
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def mark(self) -> int:
        """How many lines were logged so far (to wait for lines after this point)."""
        with self._cond:
            return len(self.lines)

    def logs(self, event: str | None = None, after: int = 0, **fields: Any) -> list[dict[str, Any]]:
        """Lines (after index ``after``) whose ``event`` and ``fields`` match."""
        with self._cond:
            return [
                line
                for line in self.lines[after:]
                if (event is None or line.get("event") == event) and all(line.get(k) == v for k, v in fields.items())
            ]

    def wait_log(
        self, event: str | None = None, n: int = 1, after: int = 0, timeout: float = TIMEOUT, **fields: Any
    ) -> list[dict[str, Any]]:
        """The matching lines once at least ``n`` were logged; fails after ``timeout`` or if the daemon exits."""

        def enough() -> bool:
            return len(self.logs(event, after, **fields)) >= n or self.proc.poll() is not None

        with self._cond:
            self._cond.wait_for(enough, timeout=timeout)
        found = self.logs(event, after, **fields)
        if len(found) < n:
            tail = "\n".join(json.dumps(line) for line in self.lines[-15:])
            raise AssertionError(
                f"expected {n} {event!r} line(s) with {fields} (exit code {self.proc.poll()}):\n{tail}"
            )
        return found

    def stop(self, sig: int = signal.SIGTERM, timeout: float = GRACE_PERIOD + 10) -> int:
        """Send ``sig`` and return the exit code (bounded by ``timeout``)."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        """kill -9, and reap it."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Starts daemons; any still running at the end of the test is killed."""
    started: list[Daemon] = []

    def launch(config: Path, env: dict[str, str] | None = None, *, nofile: int | None = None) -> Daemon:
        daemon = Daemon(config, env, nofile=nofile)
        started.append(daemon)
        return daemon

    yield launch
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.kill()
        if daemon.proc.stderr is not None:
            daemon.proc.stderr.close()


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    """A json:// webhook receiver on loopback."""
    with WebhookReceiver(path="/hooks/orderwatch") as receiver:
        yield receiver


def titles(hook: WebhookReceiver) -> list[str]:
    """The titles of every message the webhook received, in order."""
    return [str(r.body.get("title")) for r in hook.requests if isinstance(r.body, dict)]


def event_titles(hook: WebhookReceiver) -> list[int]:
    """The event ids of every event message received (rules title them "event ID")."""
    return [int(t.split()[1]) for t in titles(hook) if re.fullmatch(r"event \d+", t)]


def stored_events(database: Path) -> list[Event]:
    """Every event in the database, oldest first (read-only, as the CLI reads it)."""
    store = Store.open(database, readonly=True)
    try:
        return store.events()
    finally:
        store.close()


def event_ids(events: list[Event]) -> list[int]:
    """The ids of ``events``, sorted."""
    return sorted(e.id for e in events if e.id is not None)


def labelled(**labels: str) -> frozenset[tuple[str, str]]:
    """A label set, as ``scraped_samples`` keys it."""
    return frozenset(labels.items())


def scraped_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition text, parsed by prometheus_client: (name, label set) → value."""
    return {
        (sample.name, labelled(**sample.labels)): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- running -------------------------------------------------------------------------------------------------------


def test_transitions_delivered_while_running(
    tmp_path: Path, sim: Simulator, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """Changes made while the daemon runs become events, each delivered once; files are private; metrics served."""
    port = free_port()
    db = tmp_path / "state" / "ow.db"
    config = tmp_path / "orderwatch.toml"
    extra = f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    config.write_text(daemon_config(server.url, db, hook, sources=("ace", "images"), extra=extra))
    daemon = start(config)
    daemon.wait_log("polled", source="ace", baseline=True)
    daemon.wait_log("polled", source="images", baseline=True)

    ace = [o["id"] for o in sim.orders("ace") if o["state"] == "Pending"][:2]
    lsky = [o["trade_no"] for o in sim.orders("lsky") if o["status"] == "unpaid"][:1]
    sim.set_state("ace", ace[0], "Paid")
    sim.set_state("ace", ace[1], "Expired")
    sim.set_state("lsky", lsky[0], "paid")
    hook.wait_for(3, timeout=TIMEOUT)

    scraped = scraped_samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    assert scraped[("orderwatch_polls_total", labelled(source="ace", outcome="ok"))] >= 1
    paid = labelled(source="ace", kind="transition", from_state="Pending", to_state="Paid")
    assert scraped[("orderwatch_events_total", paid)] == 1
    assert scraped[("orderwatch_last_success_timestamp_seconds", labelled(source="images"))] > 1.7e9
    assert ("orderwatch_outbox_pending", labelled()) in scraped

    assert daemon.stop() == 0
    events = stored_events(db)
    assert sorted((e.order_id, e.raw_to) for e in events) == sorted(
        [(ace[0], "Paid"), (ace[1], "Expired"), (lsky[0], "paid")]
    )
    assert sorted(event_titles(hook)) == event_ids(events)
    for path in [db, *db.parent.glob("ow.db-*")]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path

    status = run_cli(config, "status", "--format", "json")
    assert status.code == 0, status.err
    rows = {r["source"]: r for r in json.loads(status.out) if "source" in r}
    assert set(rows) == {"ace", "images"}
    assert all(r["last success"] != "never" and r["next poll"] == "" and r["failures"] == 0 for r in rows.values())


def test_slow_source_does_not_delay_others(
    tmp_path: Path, sim: Simulator, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """While one source's poll hangs on a slow answer, the other keeps being polled on its interval."""
    config = tmp_path / "orderwatch.toml"
    config.write_text(daemon_config(server.url, tmp_path / "ow.db", hook, sources=("ace", "images")))
    daemon = start(config)
    daemon.wait_log("polled", source="ace", baseline=True)
    daemon.wait_log("polled", source="images", baseline=True)

    sim.faults.slow_seconds = 5.0
    before = sim.requests("ace")
    sim.inject("ace", "slow")
    wait_until(lambda: sim.requests("ace") > before, "the slow request to be in flight")
    mark = daemon.mark()
    daemon.wait_log("polled", n=2, source="images", after=mark)
    assert daemon.logs("polled", after=mark, source="ace") == []  # still waiting for its answer
    assert daemon.stop() == 0
    assert daemon.logs("polled", after=mark, source="ace") != []  # and let finish at the stop


def test_ready_status_watchdog_stopping_on_notify_socket(
    tmp_path: Path, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """Under a NOTIFY_SOCKET the daemon says READY=1, STATUS= per source, WATCHDOG=1 pings, then STOPPING=1."""
    config = tmp_path / "orderwatch.toml"
    config.write_text(daemon_config(server.url, tmp_path / "ow.db", hook))
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(TIMEOUT)
        daemon = start(config, {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        messages: list[str] = []

        def receive_until(pred: Callable[[str], bool]) -> None:
            deadline = time.monotonic() + TIMEOUT
            while not any(pred(m) for m in messages):
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                messages.extend(sock.recv(4096).decode().splitlines())

        receive_until(lambda m: m == "READY=1")
        receive_until(lambda m: m.startswith("STATUS=ace ok"))
        receive_until(lambda m: m == "WATCHDOG=1")
        assert messages.index("READY=1") < messages.index("WATCHDOG=1")
        assert daemon.stop() == 0
        receive_until(lambda m: m == "STOPPING=1")


def test_sigterm_finishes_inflight_poll_and_keeps_the_queue(
    tmp_path: Path, sim: Simulator, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """SIGTERM during a slow poll: that poll is recorded, the exit code is 0, undelivered messages go out next start."""
    db = tmp_path / "ow.db"
    config = tmp_path / "orderwatch.toml"
    config.write_text(daemon_config(server.url, db, hook))
    daemon = start(config)
    daemon.wait_log("polled", source="ace", baseline=True)

    hook.stop()  # deliveries fail for now: the queue builds up
    pending = [o["id"] for o in sim.orders("ace") if o["state"] == "Pending"]
    sim.set_state("ace", pending[0], "Paid")
    sim.set_state("ace", pending[1], "Failed")
    daemon.wait_log("delivery failed; will retry")

    # right after a poll ends, change an order and slow down the next request: the next poll's first
    sim.faults.slow_seconds = 2.0
    daemon.wait_log("polled", source="ace", after=daemon.mark())
    sim.set_state("ace", pending[2], "Expired")
    before = sim.requests("ace")
    sim.inject("ace", "slow")
    wait_until(lambda: sim.requests("ace") > before, "the slow request to be in flight")
    mark = daemon.mark()
    assert daemon.stop(signal.SIGTERM) == 0

    after_stop = daemon.logs(after=mark)
    names = [line.get("event") for line in after_stop]
    assert "stopping" in names
    assert "stopped" in names
    finished = [i for i, line in enumerate(after_stop) if line.get("event") == "polled" and line.get("events") == 1]
    assert finished, "the in-flight poll was not let finish"
    assert finished[0] > names.index("stopping")
    events = stored_events(db)
    assert sorted(str(e.raw_to) for e in events) == ["Expired", "Failed", "Paid"]
    assert event_titles(hook) == []

    hook.start()
    again = start(config)
    wait_until(lambda: sorted(event_titles(hook)) == event_ids(events), "the queued messages")
    assert again.stop() == 0
    assert sorted(event_titles(hook)) == event_ids(events)


def test_kill9_at_random_moments_loses_nothing(
    tmp_path: Path, sim: Simulator, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """kill -9 at random moments, then restarts: every change is an event once; at most one duplicate per kill."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    db = tmp_path / "ow.db"
    config = tmp_path / "orderwatch.toml"
    extra = "incremental = false\n"  # full sweeps only: the final one must prove every deletion
    text = daemon_config(server.url, db, hook, sources=("ace", "images"), interval="300ms")
    config.write_text(text.replace('timeout = "5s"\n', 'timeout = "5s"\n' + extra, 1))

    daemon = start(config)
    daemon.wait_log("polled", source="ace", baseline=True)
    daemon.wait_log("polled", source="images", baseline=True)
    baseline = {
        "ace": {str(o["id"]): str(o["state"]) for o in sim.orders("ace")},
        "lsky": {str(o["trade_no"]): str(o["status"]) for o in sim.orders("lsky")},
    }
    first_change = len(sim.history)
    stop_clock = threading.Event()
    clock = run_clock(sim, 0.03, stop_clock)
    kills = 3
    try:
        for _ in range(kills):
            lines = rng.randint(1, 12)  # let it do some random amount of work, then pull the plug
            daemon.wait_log(None, n=lines, after=daemon.mark())
            daemon.kill()
            daemon = start(config)
            daemon.wait_log("started")
    finally:
        stop_clock.set()
        clock.join(timeout=5)
    mark = daemon.mark()  # the second consistent sweep after this one started after the clock stopped
    daemon.wait_log("polled", n=2, source="ace", consistent=True, after=mark)
    daemon.wait_log("polled", n=2, source="images", consistent=True, after=mark)
    events = stored_events(db)
    wait_until(lambda: set(event_titles(hook)) >= set(event_ids(events)), f"every event delivered (seed {seed})")
    assert daemon.stop() == 0

    # every change of the simulator is an event, in order, each once: per order, the states the events walk
    # through are a subsequence of the states the order really went through, ending where it is now
    history = sim.history[first_change:]
    for api, source in SOURCE_OF_API.items():
        lived: dict[str, list[str | None]] = {k: [s] for k, s in baseline[api].items()}
        for change in (c for c in history if c.api == api):
            lived.setdefault(change.key, []).append(change.to_state if change.kind != "deleted" else None)
        seen: dict[str, list[Event]] = {}
        for ev in (e for e in events if e.source == source):
            seen.setdefault(ev.order_id, []).append(ev)
        assert set(seen) <= set(lived), (seed, set(seen) - set(lived))
        for key, states in lived.items():
            evs = seen.get(key, [])
            walked: list[str | None] = [baseline[api][key]] if key in baseline[api] else []
            for ev in evs:
                if ev.kind == "appeared":
                    assert walked == [], (seed, key, "appeared twice or after the baseline")
                    walked.append(ev.raw_to)
                elif ev.kind == "transition":
                    assert walked and walked[-1] == ev.raw_from, (seed, key, "broken chain: lost or doubled event")
                    walked.append(ev.raw_to)
                else:
                    assert walked and walked[-1] is not None, (seed, key, "vanished twice")
                    walked.append(None)
            it = iter(states)
            assert all(any(s == w for s in it) for w in walked), (seed, key, walked, states)
            if states[-1] is not None or walked:
                assert walked and walked[-1] == states[-1], (seed, key, "final state not recorded", walked, states)

    received = Counter(event_titles(hook))
    assert set(received) == set(event_ids(events))
    assert sum(n - 1 for n in received.values()) <= kills, (seed, received.most_common(3))


def test_sighup_reloads_config(
    tmp_path: Path, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """SIGHUP with a bad config logs each problem and keeps polling; with a good one a new source is polled."""
    db = tmp_path / "ow.db"
    config = tmp_path / "orderwatch.toml"
    config.write_text(daemon_config(server.url, db, hook))
    daemon = start(config)
    daemon.wait_log("polled", source="ace", baseline=True)

    config.write_text(daemon_config(server.url, db, hook).replace('interval = "1s"', 'interval = "often"'))
    mark = daemon.mark()
    daemon.proc.send_signal(signal.SIGHUP)
    failed = daemon.wait_log("config reload failed; keeping the running config", after=mark)
    assert any("defaults.interval" in line.get("problem", "") for line in failed)
    daemon.wait_log("polled", source="ace", after=mark)

    config.write_text(daemon_config(server.url, db, hook, sources=("ace", "images")))
    mark = daemon.mark()
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_log("config reloaded", after=mark)
    assert reloaded[0]["added"] == ["images"]
    assert reloaded[0]["removed"] == []
    daemon.wait_log("polled", source="images", baseline=True, after=mark)
    daemon.wait_log("polled", source="ace", after=mark)
    assert daemon.stop() == 0


def test_revoked_token_alerts_once_and_recovers_once(
    tmp_path: Path, sim: Simulator, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """A rejected token: one health alert after the threshold, one log line saying what to fix, one recovery."""
    config = tmp_path / "orderwatch.toml"
    extra = '\n[health]\nchannel = "hook"\nfailures = 2\n'
    config.write_text(daemon_config(server.url, tmp_path / "ow.db", hook, extra=extra))
    daemon = start(config)
    daemon.wait_log("polled", source="ace", baseline=True)

    sim.revoke("ace")
    hook.wait_for(1, timeout=TIMEOUT)
    assert titles(hook) == ['orderwatch: source "ace" is failing']

    def ace_status() -> dict[str, Any]:
        status = run_cli(config, "status", "--format", "json")
        return next(r for r in json.loads(status.out) if r.get("source") == "ace")

    # the same failure again and again is counted in the database, not logged again
    wait_until(lambda: int(ace_status()["failures"]) >= 4, "four failed polls")
    row = ace_status()
    assert "401" in str(row["last error"])
    assert row["next poll"] != ""

    sim.restore("ace")
    hook.wait_for(2, timeout=TIMEOUT)
    mark = daemon.mark()
    daemon.wait_log("polled", n=2, after=mark, source="ace")
    assert daemon.stop() == 0
    assert titles(hook) == ['orderwatch: source "ace" is failing', 'orderwatch: source "ace" recovered']
    assert "401" in str(hook.requests[0].body["message"])
    assert ACE_TOKEN not in json.dumps([r.body for r in hook.requests])
    told = [line for line in daemon.lines if "rejected the token" in str(line.get("event"))]
    assert len(told) == 1
    failed = [line for line in daemon.lines if line.get("event") == "poll failed" and line.get("level") == "warning"]
    assert len(failed) == 1  # logged once, not at every interval
    recovered = [
        line for line in daemon.lines if line.get("logger") == "orderwatch.sweep.poller" and "after_failures" in line
    ]
    assert [line["event"] for line in recovered] == ["source recovered"]
    assert told[0]["source"] == "ace"
    assert ACE_TOKEN not in json.dumps(daemon.lines)


@pytest.mark.anyio
async def test_watchdog_withheld_only_while_the_daemon_is_stuck(tmp_path: Path) -> None:
    """A poll running long within its limit keeps the pings; one cancelled past its limit that does not end, a
    delivery step past DELIVERY_STALL, or a scheduler whose heartbeat job stopped running withholds them."""
    config = tmp_path / "orderwatch.toml"
    config.write_text('[sources.ace]\nkind = "acedata"\nbase_url = "http://127.0.0.1:9"\n')
    daemon = DaemonCore(load_config(config, environ={}), config_path=str(config), database=None, grace=1.0)
    limit = poll_limit(daemon.conf.sources["ace"])
    assert limit == poll_budget(daemon.conf.sources["ace"]) + 15 + POLL_SLACK
    now = 100_000.0
    assert daemon.stall(now, 1.0) is None
    daemon.inflight["ace"] = (anyio.CancelScope(), now - limit - CANCEL_STALL + 1, limit)
    assert daemon.stall(now, 1.0) is None
    daemon.inflight["ace"] = (anyio.CancelScope(), now - limit - CANCEL_STALL - 1, limit)
    assert daemon.stall(now, 1.0) == "the poll of ace was cancelled 61 s ago and has not ended"
    daemon.inflight.clear()
    daemon.delivery_started = now - DELIVERY_STALL + 1
    assert daemon.stall(now, 1.0) is None
    daemon.delivery_started = now - DELIVERY_STALL - 1
    assert (daemon.stall(now, 1.0) or "").startswith("delivery step running")
    daemon.delivery_started = None
    daemon.ticked = now - 2 - SCHEDULER_SLACK + 1
    assert daemon.stall(now, 1.0) is None
    daemon.ticked = now - 2 - SCHEDULER_SLACK - 1
    assert daemon.stall(now, 1.0) == "the scheduler has run no job for 8 s"


# ---- metrics -------------------------------------------------------------------------------------------------------


def test_metrics_render() -> None:
    """Polls count by outcome, events by kind and transition, deliveries by outcome; labels escaped, values exact."""
    metrics = Metrics()
    ev = Event("ace", "o-1", "transition", "Pending", "Paid", "Pending", "Paid", "2026-01-01T00:00:00.000000Z")
    metrics.observe_poll(PollResult("ace", events=(ev,), orders=3, requests=1), now=1700001234.567891)
    metrics.observe_poll(PollResult("ace", error="boom", outcome=Outcome.AUTH_FAILED), now=1700001235.0)
    metrics.observe_poll(
        PollResult('we"ird', error="half", outcome=Outcome.PARTIAL, requests=2, orders=5), now=1700001236.0
    )
    metrics.observe_delivery(DeliveryReport(sent=2, retrying=1, failed=0))
    metrics.observe_delivery(DeliveryReport(sent=1_234_567))
    metrics.outbox_depth = 4
    text = metrics.render()
    got = scraped_samples(text)
    assert got[("orderwatch_polls_total", labelled(source="ace", outcome="ok"))] == 1
    assert got[("orderwatch_polls_total", labelled(source="ace", outcome="auth_failed"))] == 1
    assert got[("orderwatch_polls_total", labelled(source='we"ird', outcome="partial"))] == 1
    transition = labelled(source="ace", kind="transition", from_state="Pending", to_state="Paid")
    assert got[("orderwatch_events_total", transition)] == 1
    assert got[("orderwatch_deliveries_total", labelled(outcome="sent"))] == 1_234_569
    assert ("orderwatch_deliveries_total", labelled(outcome="failed")) not in got
    assert got[("orderwatch_outbox_pending", labelled())] == 4
    assert got[("orderwatch_last_success_timestamp_seconds", labelled(source="ace"))] == 1700001234.567891
    assert "# TYPE orderwatch_polls_total counter" in text
    assert 'source="we\\"ird"' in text
    assert "_created" not in text


def test_metrics_bound_states_to_canonical_or_other() -> None:
    """Events into or out of a state that is not canonical count under "other": invented states add no series."""
    metrics = Metrics()
    for i in range(50):
        ev = Event("ace", f"o-{i}", "transition", "Pending", f"weird-{i}", "Pending", f"weird-{i}", "2026-01-01T00:00Z")
        metrics.observe_poll(PollResult("ace", events=(ev,)), now=1.0)
    appeared = Event("ace", "o-x", "appeared", None, "Paid", None, "paid", "2026-01-01T00:00:00Z")
    metrics.observe_poll(PollResult("ace", events=(appeared,)), now=1.0)
    got = scraped_samples(metrics.render())
    events = {labels: n for (name, labels), n in got.items() if name == "orderwatch_events_total"}
    assert events == {
        labelled(source="ace", kind="transition", from_state="Pending", to_state="other"): 50,
        labelled(source="ace", kind="appeared", from_state="", to_state="Paid"): 1,
    }


def test_metrics_listen_loopback_only() -> None:
    """metrics.listen must name a loopback address: metrics name sources and channels."""
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    assert parse_listen("localhost:1") == ("localhost", 1)
    for bad in ("0.0.0.0:9464", "192.0.2.1:9464", "example.com:9464", "127.0.0.1:http"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


@pytest.mark.anyio
async def test_metrics_served_over_http() -> None:
    """GET and HEAD /metrics answer the exposition text; other paths 404."""
    metrics = Metrics()
    metrics.outbox_depth = 7
    listener = await bind(f"127.0.0.1:{free_port()}")
    host, port = address(listener)
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, metrics, listener)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as client:
            ok = await client.get("/metrics")
            head = await client.head("/metrics")
            missing = await client.get("/nope")
        tg.cancel_scope.cancel()
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert scraped_samples(ok.text)[("orderwatch_outbox_pending", labelled())] == 7
    assert head.status_code == 200
    assert head.content == b""
    assert missing.status_code == 404

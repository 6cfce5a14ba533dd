"""The daemon against hostile peers and careless operators: each attack reproduced on loopback against the real daemon
(a subprocess with real sockets and signals), and shown handled.

- a flood of held connections on the metrics port, beyond the process's open-file limit;
- an API that invents a new state for every order (metrics series stay bounded);
- a second daemon started on the database of a running one (it refuses; nothing is delivered twice);
- SIGHUP while the daemon starts, and after SIGTERM (neither kills it);
- a slow API with many pages, and one whose answer never ends (WATCHDOG=1 keeps coming; the endless poll is
  cancelled past its limit).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import resource
import signal
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from orderwatch.service.metrics import MAX_CONNECTIONS, Metrics, address, bind, serve
from orderwatch.simulator import SimServer, Simulator
from tests.conftest import run_cli
from tests.receivers import WebhookReceiver
from tests.test_daemon import (
    TIMEOUT,
    Daemon,
    daemon_config,
    free_port,
    hook,
    labelled,
    scraped_samples,
    start,
    wait_until,
)

__all__ = ["hook", "start"]  # the fixtures of the daemon's tests, used here too

# ---- a tiny orders API ------------------------------------------------------------------------------------------


class TinyAce:
    """A minimal Ace-format orders API on 127.0.0.1 (``GET /api/v1/orders/?limit&offset`` → ``{count, items}``).

    ``states`` (key → state) may hold any state at all. Each page is answered after ``delay`` seconds; with
    ``trickle`` set, a page's body comes one byte every 0.1 s and never ends (until ``stop()``).
    """

    def __init__(self, orders: int, *, delay: float = 0.0) -> None:
        self.states = {f"o-{i:04d}": "Pending" for i in range(orders)}
        self.delay = delay
        self.trickle = threading.Event()
        self.requests = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def page(self, limit: int, offset: int) -> bytes:
        """The body of one list page, newest first."""
        with self._lock:
            keys = sorted(self.states, reverse=True)
            items = [
                {"id": k, "state": self.states[k], "created_at": f"2026-01-01T00:00:{int(k[2:]) % 60:02d}Z"}
                for k in keys[offset : offset + limit]
            ]
            return json.dumps({"count": len(keys), "items": items}).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with api._lock:
                    api.requests += 1
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path != "/api/v1/orders/":
                    self.send_error(404)
                    return
                if api._stopping.wait(api.delay):
                    return
                body = api.page(int(query.get("limit", ["10"])[0]), int(query.get("offset", ["0"])[0]))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if api.trickle.is_set():
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    with contextlib.suppress(OSError):  # until the client gives up
                        while not api._stopping.wait(0.1):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End every answer in progress and stop serving."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def tiny_source(url: str, *, page_size: int = 10, extra: str = "") -> str:
    """A ``[sources.ace]`` table for a ``TinyAce`` (full sweeps only: it does not filter by state)."""
    return (
        f'\n[sources.ace]\nkind = "acedata"\nbase_url = "{url}"\npage_size = {page_size}\nincremental = false\n' + extra
    )


def tiny_config(url: str, database: Path, hook: WebhookReceiver, *, source: str = "", extra: str = "") -> str:
    """A daemon config whose only source is a ``TinyAce`` at ``url``."""
    text = daemon_config("http://unused.invalid", database, hook, sources=(), interval="300ms", extra=extra)
    return text + (source or tiny_source(url))


class GatedHook:
    """A json:// webhook on 127.0.0.1 that holds every POST until ``gate`` is set (for at most TIMEOUT), then records
    its title and answers 200."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.arrived = 0
        self.titles: list[str] = []
        self._cond = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url_for_apprise(self) -> str:
        """Its json:// URL (a read timeout longer than the gate is ever held)."""
        return f"json://127.0.0.1:{self._server.server_address[1]}/hook?cto=2&rto={int(TIMEOUT) + 10}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with hook._cond:
                    hook.arrived += 1
                    hook._cond.notify_all()
                hook.gate.wait(TIMEOUT)
                with hook._cond:
                    hook.titles.append(str(body.get("title")))
                    hook._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler

    def wait(self, check: Callable[[], bool], what: str) -> None:
        """Until ``check()`` holds (at most TIMEOUT)."""
        with self._cond:
            if not self._cond.wait_for(check, timeout=TIMEOUT):
                raise AssertionError(f"timed out waiting for {what}")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class NotifyListener:
    """A NOTIFY_SOCKET bound in ``directory``, as systemd offers one; every message line is kept with the monotonic
    time it arrived."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.messages: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.settimeout(0.1)
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._receive, daemon=True)

    def _receive(self) -> None:
        while not self._done.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.extend((time.monotonic(), line) for line in data.decode().splitlines())

    def env(self, watchdog_usec: int) -> dict[str, str]:
        """The environment that points a daemon at this socket with a watchdog."""
        return {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": str(watchdog_usec)}

    def pings(self) -> list[float]:
        """When each WATCHDOG=1 arrived."""
        with self._lock:
            return [t for t, m in self.messages if m == "WATCHDOG=1"]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self._sock.close()


def longest_gap(times: list[float], since: float, until: float) -> float:
    """The longest time without one of ``times`` between ``since`` and ``until``."""
    points = [since, *(t for t in times if since < t < until), until]
    return max(b - a for a, b in itertools.pairwise(points))


# ---- fixtures ---------------------------------------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
    """The samples at http://127.0.0.1:PORT/metrics, or None when no answer comes within a second."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
    except httpx.HTTPError:
        return None
    return scraped_samples(answer.text) if answer.status_code == 200 else None


# ---- metrics ----------------------------------------------------------------------------------------------------


def test_connection_flood_on_metrics_port_does_not_stop_the_daemon(
    tmp_path: Path, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """300 held connections to the metrics port of a daemon allowed 256 open files: it keeps polling throughout,
    and serves metrics again once the connections close."""
    port = free_port()
    config = tmp_path / "orderwatch.toml"
    extra = f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    config.write_text(daemon_config(server.url, tmp_path / "ow.db", hook, interval="300ms", extra=extra))
    daemon = start(config, nofile=256)
    daemon.wait_log("polled", source="ace", baseline=True)
    assert scrape(port) is not None

    flood: list[socket.socket] = []
    try:
        for _ in range(300):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            flood.append(sock)
        mark = daemon.mark()
        daemon.wait_log("polled", n=3, source="ace", after=mark)
        assert daemon.proc.poll() is None
    finally:
        for sock in flood:
            sock.close()

    wait_until(lambda: scrape(port) is not None, "metrics served again after the flood")
    after = scrape(port)
    assert after is not None
    assert not [k for k in after if k[0] == "orderwatch_metrics_accept_errors_total"]  # it never ran out of files
    mark = daemon.mark()
    daemon.wait_log("polled", n=2, source="ace", after=mark)
    assert daemon.stop() == 0
    assert daemon.logs("metrics server failed; metrics are not served until the next start") == []


@pytest.mark.anyio
async def test_metrics_accept_failing_with_emfile_pauses_then_serves() -> None:
    """accept() failing with EMFILE (no descriptor left) pauses the listener instead of ending it; once descriptors
    are free again, the waiting connections are answered."""
    metrics = Metrics()
    metrics.outbox_depth = 3
    listener = await bind("127.0.0.1:0")
    host, port = address(listener)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients: list[socket.socket] = []
    answers: list[bytes] = []

    async def scrape_raw(sock: socket.socket) -> None:
        await anyio.wait_writable(sock)
        sock.send(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        with anyio.fail_after(TIMEOUT):
            while True:
                await anyio.wait_readable(sock)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        answers.append(data)

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(MAX_CONNECTIONS // 2):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex((host, port))
                clients.append(sock)
            resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))  # no new descriptor can be had
            try:
                tg.start_soon(serve, metrics, listener)
                with anyio.fail_after(TIMEOUT):  # until it failed, paused, and tried again
                    while metrics.accept_errors["EMFILE"] < 2:  # noqa: ASYNC110 (a counter, not an event)
                        await anyio.sleep(0.01)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            async with anyio.create_task_group() as scrapes:
                for sock in clients:
                    scrapes.start_soon(scrape_raw, sock)
            tg.cancel_scope.cancel()
    finally:
        for sock in clients:
            sock.close()
    assert len(answers) == len(clients)
    assert all(a.startswith(b"HTTP/1.0 200 OK") and b"orderwatch_outbox_pending 3.0" in a for a in answers)
    assert b'orderwatch_metrics_accept_errors_total{error="EMFILE"}' in answers[0]


def test_invented_states_do_not_grow_metrics(
    tmp_path: Path, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """An API that gives every order a fresh random state: /metrics counts those events under "other", one series."""
    port = free_port()
    with TinyAce(30) as api:
        config = tmp_path / "orderwatch.toml"
        extra = f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        config.write_text(tiny_config(api.url, tmp_path / "ow.db", hook, extra=extra))
        daemon = start(config)
        daemon.wait_log("polled", source="ace", baseline=True)
        with api._lock:
            for n, key in enumerate(sorted(api.states)):
                api.states[key] = f"state-{n}-{key}"
        mark = daemon.mark()
        daemon.wait_log("polled", source="ace", after=mark, events=30)
        got = scrape(port)
        assert daemon.stop() == 0
    assert got is not None
    events = {labels: n for (name, labels), n in got.items() if name == "orderwatch_events_total"}
    assert events == {labelled(source="ace", kind="transition", from_state="Pending", to_state="other"): 30}
    assert "state-" not in json.dumps(sorted(str(k) for k in got))


# ---- one writer -------------------------------------------------------------------------------------------------


def test_second_daemon_on_one_database_refuses_and_nothing_goes_out_twice(
    tmp_path: Path, sim: Simulator, server: SimServer, start: Callable[..., Daemon]
) -> None:
    """A second daemon on the database of a running one, started while the first holds delivery leases: it exits 1
    naming the first one's pid, leaves the leases alone, and every notification goes out once; kill -9 frees it."""
    config = tmp_path / "orderwatch.toml"
    with GatedHook() as hook:
        config.write_text(daemon_config(server.url, tmp_path / "ow.db", hook))
        first = start(config)
        first.wait_log("polled", source="ace", baseline=True)
        pending = [o["id"] for o in sim.orders("ace") if o["state"] == "Pending"][:2]
        sim.set_state("ace", pending[0], "Paid")
        sim.set_state("ace", pending[1], "Expired")
        hook.wait(lambda: hook.arrived >= 1, "the first daemon to be sending (its rows leased)")

        second = start(config)
        assert second.proc.wait(timeout=TIMEOUT) == 1
        refused = second.wait_log("cannot use the database")
        assert len(refused) == 1
        assert f"pid {first.proc.pid}" in refused[0]["error"]
        assert "another orderwatch daemon" in refused[0]["error"]

        hook.gate.set()
        hook.wait(lambda: len(hook.titles) >= 2, "both notifications")
        mark = first.mark()
        first.wait_log("polled", n=2, source="ace", after=mark)
        assert first.stop() == 0
    titles = Counter(t for t in hook.titles if re.fullmatch(r"event \d+", t))
    assert len(titles) == 2
    assert set(titles.values()) == {1}

    crashed = start(config)
    crashed.wait_log("started")
    crashed.kill()
    after = start(config)
    after.wait_log("started")
    assert after.stop() == 0


# ---- signals ----------------------------------------------------------------------------------------------------


def test_sighup_while_starting_is_taken_once_started(
    tmp_path: Path, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """SIGHUP while the daemon is still opening its database (held busy by another connection) does not kill it:
    once started it reads the config again, and polls."""
    db = tmp_path / "ow.db"
    config = tmp_path / "orderwatch.toml"
    config.write_text(daemon_config(server.url, db, hook))
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("PRAGMA journal_mode=DELETE")
        blocker.execute("BEGIN EXCLUSIVE")
        daemon = start(config)
        daemon.wait_log("starting")
        for _ in range(3):
            daemon.proc.send_signal(signal.SIGHUP)
        assert daemon.logs("started") == []
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    started = daemon.mark()
    daemon.wait_log("started")
    daemon.wait_log("SIGHUP came while starting: reading the config again", after=started)
    daemon.wait_log("config reloaded", after=started)
    daemon.wait_log("polled", source="ace", after=started)
    assert daemon.stop() == 0


def test_sighup_after_sigterm_does_not_break_the_stop(
    tmp_path: Path, sim: Simulator, server: SimServer, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """SIGHUPs sent without pause from SIGTERM until the daemon has exited: its in-flight poll still finishes, and it
    exits 0."""
    config = tmp_path / "orderwatch.toml"
    config.write_text(daemon_config(server.url, tmp_path / "ow.db", hook))
    daemon = start(config)
    daemon.wait_log("polled", source="ace", baseline=True)
    sim.faults.slow_seconds = 1.0
    before = sim.requests("ace")
    sim.inject("ace", "slow")
    wait_until(lambda: sim.requests("ace") > before, "the slow request to be in flight")

    mark = daemon.mark()
    daemon.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + TIMEOUT
    pause = threading.Event()
    sent = 0
    while daemon.proc.poll() is None and time.monotonic() < deadline:
        daemon.proc.send_signal(signal.SIGHUP)
        sent += 1
        pause.wait(0.002)
    assert daemon.proc.wait(timeout=TIMEOUT) == 0
    daemon._reader.join(timeout=5)
    assert sent > 10
    names = [line.get("event") for line in daemon.logs(after=mark)]
    assert names.index("stopping") < names.index("polled") < names.index("stopped")
    assert names.count("config reloaded") <= 1  # only a hang-up that beat the SIGTERM to the event loop


# ---- watchdog and poll limits -----------------------------------------------------------------------------------

WATCHDOG_USEC = 2_000_000  # pings every 0.5 s; systemd would act after 2 s without one


def test_watchdog_pings_through_a_long_honest_sweep(
    tmp_path: Path, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """A slow API answering each of 80 pages after 0.3 s: the sweep lasts several watchdog periods, and WATCHDOG=1
    comes more often than every WATCHDOG_USEC/2 all along."""
    with TinyAce(160, delay=0.3) as api, NotifyListener(tmp_path) as notify:
        config = tmp_path / "orderwatch.toml"
        config.write_text(tiny_config(api.url, tmp_path / "ow.db", hook, source=tiny_source(api.url, page_size=2)))
        daemon = start(config, notify.env(WATCHDOG_USEC))
        daemon.wait_log("started")
        began = time.monotonic()
        polled = daemon.wait_log("polled", source="ace", baseline=True, timeout=60)
        ended = time.monotonic()
        assert daemon.stop() == 0
    assert polled[0]["requests"] >= 80  # the 80 pages, and the plan's own questions
    assert polled[0]["duration"] >= 2 * WATCHDOG_USEC / 1e6
    assert longest_gap(notify.pings(), began, ended) < WATCHDOG_USEC / 2e6


def test_a_trickling_answer_is_cut_at_its_deadline_and_pings_go_on(
    tmp_path: Path, hook: WebhookReceiver, start: Callable[..., Daemon]
) -> None:
    """An API whose answer trickles in a byte every 0.1 s (each read in time, the body never ending): the request is
    cut at its total deadline (``timeout``), the poll fails saying so, WATCHDOG=1 keeps coming, and the next poll,
    once the API answers, succeeds."""
    limits = 'timeout = "250ms"\nmax_pages = 2\nretry_budget = "0s"\n'
    with TinyAce(10) as api, NotifyListener(tmp_path) as notify:
        api.trickle.set()
        config = tmp_path / "orderwatch.toml"
        config.write_text(tiny_config(api.url, tmp_path / "ow.db", hook, source=tiny_source(api.url, extra=limits)))
        daemon = start(config, notify.env(WATCHDOG_USEC))
        daemon.wait_log("started")
        began = time.monotonic()
        failed = daemon.wait_log("poll failed", source="ace")
        api.trickle.clear()
        mark = daemon.mark()
        daemon.wait_log("polled", source="ace", baseline=True, after=mark)
        ended = time.monotonic()
        assert daemon.stop() == 0
    assert "no complete answer within 0.25s" in failed[0]["error"]
    assert longest_gap(notify.pings(), began, ended) < WATCHDOG_USEC / 2e6
    status = run_cli(config, "status", "--format", "json")
    row = next(r for r in json.loads(status.out) if r.get("source") == "ace")
    assert row["failures"] == 0  # the poll after it succeeded

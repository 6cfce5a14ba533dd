"""A hostile orders API on loopback, and running the real CLI on a pseudo-terminal.

``HostileApi`` speaks the Ace Data Cloud list format (``GET /api/v1/orders/?limit=&offset=`` answering
``{"count", "items"}``, and ``GET /api/v1/orders/KEY``) with whatever orders a test puts in it — ids and states full
of escape sequences and markup — or answers every request with an error a test writes from the request, such as a
401 quoting the bearer token back.

    with HostileApi() as api:
        api.orders = [{"id": "\\x1b[2J", "state": "Paid"}]
        api.error = lambda request: (401, b'{"detail": "bad token ' + request.token.encode() + b'"}')
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

HOST = "127.0.0.1"
LIST_PATH = "/api/v1/orders/"


@dataclass(frozen=True)
class Request:
    """One request the API received."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]

    @property
    def token(self) -> str:
        """The bearer token it carried ('' when none)."""
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""


class HostileApi:
    """A threaded HTTP server on 127.0.0.1 serving ``orders`` in the Ace list format, or ``error(request)``."""

    def __init__(self) -> None:
        self.orders: list[dict[str, Any]] = []
        self.error: Callable[[Request], tuple[int, bytes]] | None = None
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL of the API."""
        assert self._server is not None
        return f"http://{HOST}:{self._server.server_address[1]}"

    def answer(self, request: Request) -> tuple[int, bytes]:
        """The status and JSON body for ``request``."""
        with self._lock:
            self.requests.append(request)
            error, orders = self.error, list(self.orders)
        if error is not None:
            return error(request)
        if request.path == LIST_PATH:
            offset = int(request.query.get("offset", ["0"])[0])
            limit = int(request.query.get("limit", ["100"])[0])
            states = request.query.get("state")
            chosen = [o for o in orders if states is None or o.get("state") in states]
            return 200, json.dumps({"count": len(chosen), "items": chosen[offset : offset + limit]}).encode()
        if request.path.startswith(LIST_PATH):
            key = unquote(request.path[len(LIST_PATH) :])
            for order in orders:
                if str(order.get("id")) == key:
                    return 200, json.dumps(order).encode()
        return 404, b'{"detail": "Not found."}'

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                request = Request(parts.path, parse_qs(parts.query), dict(self.headers.items()))
                status, body = api.answer(request)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read ``requests`` instead."""

        return Handler

    def __enter__(self) -> Self:
        server = ThreadingHTTPServer((HOST, 0), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="hostile-api", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def hostile_config(path: Path, url: str, token: str, *, extra: str = "") -> Path:
    """A config with one Ace-format source ``ace`` at ``url`` (its token inline), database beside it, mode 0600."""
    path.write_text(
        f'database = "{(path.parent / "ow.db").as_posix()}"\n\n'
        f'[sources.ace]\nkind = "acedata"\nbase_url = "{url}"\ntoken = "{token}"\ntimeout = "5s"\n\n'
        f'[log]\nformat = "console"\n{extra}'
    )
    path.chmod(0o600)
    return path


def run_on_terminal(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    """Run ``python -m orderwatch ARGS`` with stdout and stderr on a 400-column pseudo-terminal; its exit code and
    every byte it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))
    clean = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "FORCE_COLOR", "JOURNAL_STREAM"}}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orderwatch", *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env={**clean, "COLUMNS": "400", "TERM": "xterm-256color", **(env or {})},
        )
        os.close(slave)
        slave = -1
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                raise AssertionError(f"orderwatch {' '.join(args)} still running after {timeout} s")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=timeout)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return code, b"".join(chunks)


class JsonDaemon:
    """``python -m orderwatch --config PATH run`` in a subprocess whose JSON log lines (stderr) are collected."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        clean = {
            k: v
            for k, v in os.environ.items()
            if k not in {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "ORDERWATCH_CONFIG"}
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orderwatch", "--config", str(config), "run"],
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
                line = None
            with self._cond:
                self.lines.append(line if isinstance(line, dict) else {"event": text, "raw": True})
                self._cond.notify_all()

    def logs(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """The lines logged so far with this ``event`` and ``fields``."""
        with self._cond:
            return [
                line
                for line in self.lines
                if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
            ]

    def wait_log(self, event: str, n: int = 1, timeout: float = 30, **fields: Any) -> list[dict[str, Any]]:
        """The matching lines once ``n`` are in; fails after ``timeout`` seconds or when the daemon exits."""
        with self._cond:
            self._cond.wait_for(
                lambda: len(self.logs(event, **fields)) >= n or self.proc.poll() is not None, timeout=timeout
            )
            found = self.logs(event, **fields)
            assert len(found) >= n, f"expected {n} {event!r} line(s) with {fields}:\n" + "\n".join(
                json.dumps(line) for line in self.lines[-20:]
            )
            return found

    def stop(self, timeout: float) -> int:
        """SIGTERM, then the exit code within ``timeout`` seconds."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        """Make sure the process is gone and its pipe closed (after a failed test too)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class SlowWebhook:
    """A webhook on 127.0.0.1 that reads each POST, records it, and answers 200 only after ``delay`` seconds (or
    when the test ends). ``url_for_apprise`` sets apprise's own read timeout (``rto``) below that delay."""

    def __init__(self, delay: float, path: str = "/hooks/slow") -> None:
        self.delay = delay
        self.path = path
        self.posts: list[bytes] = []
        self._cond = threading.Condition()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook._cond:
                    hook.posts.append(body)
                    hook._cond.notify_all()
                hook._release.wait(hook.delay)  # the slowness under test, not a wait of the test
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read ``posts``."""

        return Handler

    @property
    def url_for_apprise(self) -> str:
        """The ``json://`` URL of this webhook, with apprise's read timeout at 1 s."""
        assert self._server is not None
        return f"json://{HOST}:{self._server.server_address[1]}{self.path}?cto=2&rto=1"

    def wait_for(self, n: int, timeout: float) -> list[bytes]:
        """The POSTs once ``n`` arrived; TimeoutError after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.posts) >= n, timeout=timeout):
                raise TimeoutError(f"expected {n} POST(s) within {timeout} s, got {len(self.posts)}")
            return list(self.posts)

    def __enter__(self) -> Self:
        server = ThreadingHTTPServer((HOST, 0), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="slow-webhook", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

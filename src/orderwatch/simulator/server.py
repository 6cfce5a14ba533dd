"""The HTTP side: a ``ThreadingHTTPServer`` in a daemon thread serving a simulator, and the demo's clock.

Anything with ``handle_request(method, target, headers, base_url) -> SimResponse`` can be served (``RequestHandler``):
the seed ``Simulator``, a ``ShopSimulator``, or a ``ShopRouter`` that puts several of them behind one port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast

from orderwatch.simulator.wire import SimResponse


class RequestHandler(Protocol):
    """What ``SimServer`` serves: one HTTP request in (lower-case header names), one ``SimResponse`` out."""

    def handle_request(self, method: str, target: str, headers: Mapping[str, str], base_url: str) -> SimResponse:
        """Answer ``method target``; ``base_url`` is ``http://host:port`` as the client addressed the server."""
        ...


class Steppable(Protocol):
    """What ``run_clock`` drives: something that makes one random change per ``step()``."""

    def step(self) -> object:
        """Make one random change."""
        ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops connects of concurrent clients (1 s SYN retry)
    sim: RequestHandler
    open_sockets: set[Any]

    def process_request(self, request: Any, client_address: Any) -> None:
        self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (or the server stopping under them) are normal here: stay quiet."""


MAX_BODY = 1 << 20  # a request body the simulator reads (and ignores) before it answers; larger ones close


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: benchmarks page through 100k orders
    timeout = 120

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body: no Nagle wait

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= MAX_BODY:
            self.rfile.read(length)  # read, so that the answer is not met by a reset from unread bytes
        else:
            self.close_connection = True
        self._serve(self.command)

    do_PUT = do_PATCH = do_DELETE = do_POST

    def _serve(self, method: str) -> None:
        server = cast("_Server", self.server)
        host = self.headers.get("Host") or "{}:{}".format(*server.server_address[:2])
        headers = {name.lower(): value for name, value in self.headers.items()}
        resp = server.sim.handle_request(method, self.path, headers, f"http://{host}")
        if resp.delay:
            time.sleep(resp.delay)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests and benchmarks make thousands of requests."""


class SimServer:
    """Serves a simulator (any ``RequestHandler``) on loopback in a daemon thread; a context manager (also
    ``start``/``stop``)."""

    def __init__(self, sim: RequestHandler, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim, self.host, self.port = sim, host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (seed ``Simulator``: Ace at ``/api/v1/orders/``, Lsky at ``/api/v2/user/orders``)."""
        if self._server is None:
            raise RuntimeError("the simulator server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SimServer:
        """Bind and start serving (no-op when already started); return self."""
        if self._server is None:
            server = _Server((self.host, self.port), _Handler)
            server.sim, server.open_sockets = self.sim, set()
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="orderwatch-sim", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open keep-alive connections and close the listening socket."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        for sock in list(server.open_sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_clock(sim: Steppable, every: float, stop: threading.Event) -> threading.Thread:
    """Start a daemon thread that calls ``sim.step()`` every ``every`` seconds until ``stop`` is set."""

    def tick() -> None:
        while not stop.wait(every):
            sim.step()

    thread = threading.Thread(target=tick, name="orderwatch-sim-clock", daemon=True)
    thread.start()
    return thread

"""Real loopback receivers for notification tests: a JSON webhook (for apprise's ``json://``) and an SMTP server
(aiosmtpd, for ``mailto://``). Both record what they receive and let a test wait for it with a bound.

    with WebhookReceiver(path="/hook/token") as hook:
        ...send to hook.url_for_apprise...
        bodies = hook.wait_for(1, timeout=5)
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"
# short socket timeouts so a dead receiver fails fast (apprise URL arguments)
FAST = "cto=2&rto=5"


class _Recorder:
    """A thread-safe list of received items with a condition to wait on."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._cond = threading.Condition()

    def add(self, item: Any) -> None:
        """Record ``item`` and wake waiters."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def snapshot(self) -> list[Any]:
        """A copy of everything recorded so far."""
        with self._cond:
            return list(self._items)

    def wait_for(self, n: int, timeout: float) -> list[Any]:
        """Everything recorded once at least ``n`` items are in; TimeoutError after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) >= n, timeout=timeout):
                raise TimeoutError(f"expected {n} item(s) within {timeout} s, got {len(self._items)}")
            return list(self._items)


@dataclass(frozen=True)
class WebhookRequest:
    """One POST the webhook received."""

    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body (None when it was not JSON)


class WebhookReceiver:
    """A threaded HTTP server on 127.0.0.1 that records every POST's JSON body.

    ``status``: the HTTP status it answers (set 500 to make sends fail). ``stop()`` closes the socket (connections
    are refused) and ``start()`` opens it again on the same port, so the same URL works after a restart.
    """

    def __init__(self, path: str = "/hook", status: int = 200) -> None:
        self.path = path
        self.status = status
        self.port = 0
        self._recorder = _Recorder()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        """The request handler class bound to this receiver."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                receiver._recorder.add(WebhookRequest(self.path, dict(self.headers.items()), body))
                status = receiver.status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read the recorded requests instead."""

        return Handler

    def start(self) -> Self:
        """Listen (on the port used before, if any) and serve in a daemon thread."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((HOST, self.port), self._handler())
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket: connections to the URL are refused until ``start()``."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def url_for_apprise(self) -> str:
        """The ``json://`` URL that posts to this receiver (with short socket timeouts)."""
        return f"json://{HOST}:{self.port}{self.path}?{FAST}"

    @property
    def requests(self) -> list[WebhookRequest]:
        """Every request received so far."""
        return self._recorder.snapshot()

    def wait_for(self, n: int, timeout: float = 5.0) -> list[WebhookRequest]:
        """The requests once at least ``n`` arrived; TimeoutError after ``timeout`` seconds."""
        return self._recorder.wait_for(n, timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class ReceivedMail:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    login: str | None  # the user name it authenticated with, if any

    @property
    def subject(self) -> str:
        """The decoded Subject header."""
        return str(self.message["Subject"] or "")

    def text(self) -> str:
        """The decoded body (the plain-text part when there is one, else the HTML part)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        text = "" if part is None else str(part.get_content())
        return text.replace("\r\n", "\n")


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (aiosmtpd's Controller cannot bind port 0)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class SmtpReceiver:
    """An aiosmtpd server on 127.0.0.1 (plain SMTP, no TLS) recording every message it accepts.

    With ``user``/``password`` it offers AUTH (over plain text: loopback only) and accepts only those credentials.
    """

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.user = user
        self.password = password
        self._recorder = _Recorder()
        self.port = _free_port()
        self._controller = Controller(
            self,
            hostname=HOST,
            port=self.port,
            authenticator=self._authenticate if user is not None else None,
            auth_require_tls=False,
        )

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        """Accept exactly the configured login and password."""
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if login == self.user and password == self.password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd hook: record the message."""
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth_data = getattr(session, "auth_data", None)
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None
        self._recorder.add(ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), message, login))
        return "250 Message accepted for delivery"

    def start(self) -> Self:
        """Start the server thread."""
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop the server thread."""
        self._controller.stop()

    def url_for_apprise(self, to: str = "ops@example.com", sender: str = "orderwatch@example.com") -> str:
        """The ``mailto://`` URL that delivers to this server: plain SMTP (``mode=insecure``), short timeout."""
        auth = ""
        if self.user is not None:
            auth = quote(self.user, safe="") + (f":{quote(self.password, safe='')}" if self.password else "") + "@"
        return f"mailto://{auth}{HOST}:{self.port}?mode=insecure&to={quote(to)}&from={quote(sender)}&format=text&cto=5"

    @property
    def messages(self) -> list[ReceivedMail]:
        """Every message accepted so far."""
        return self._recorder.snapshot()

    def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """The messages once at least ``n`` arrived; TimeoutError after ``timeout`` seconds."""
        return self._recorder.wait_for(n, timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Optional Prometheus metrics in the text exposition format, served on a loopback address (``[metrics] listen``).

No client library: a few counters and gauges kept in memory by the daemon, rendered on each scrape of ``/metrics``
by a minimal HTTP/1.0 responder on anyio. Only loopback addresses are accepted: metrics name sources and channels.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from orderwatch.errors import ConfigError

if TYPE_CHECKING:
    from orderwatch.delivery.deliverer import DeliveryReport
    from orderwatch.sweep.poller import PollResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST = 8192
READ_TIMEOUT = 5.0


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` → host and port; ConfigError unless the host is a loopback address."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not port.isdigit():
        raise ConfigError(f'metrics.listen: expected a loopback host:port like "127.0.0.1:9464", got "{listen}"')
    return host, int(port)


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {value:g}" for labels, value in samples]
    return lines


class Metrics:
    """The daemon's counters and gauges; ``render()`` is the exposition text."""

    def __init__(self) -> None:
        self.polls: Counter[tuple[str, str]] = Counter()  # (source, outcome)
        self.events: Counter[tuple[str, str, str, str]] = Counter()  # (source, kind, from, to)
        self.deliveries: Counter[str] = Counter()  # outcome
        self.outbox_depth = 0
        self.last_success: dict[str, float] = {}  # source → unix time
        self.poll_duration: dict[str, float] = {}  # source → seconds of the last poll

    def observe_poll(self, result: PollResult, now: float) -> None:
        """Count one poll by outcome (ok, partial, failed, auth_failed) and its events by kind and transition."""
        if result.ok:
            outcome = "ok"
            self.last_success[result.source] = now
        elif result.auth_failed:
            outcome = "auth_failed"
        elif result.requests or result.orders:
            outcome = "partial"
        else:
            outcome = "failed"
        self.polls[(result.source, outcome)] += 1
        self.poll_duration[result.source] = result.duration
        for ev in result.events:
            self.events[(ev.source, ev.kind, ev.from_state or "", ev.to_state or "")] += 1

    def observe_delivery(self, report: DeliveryReport) -> None:
        """Count one delivery step's rows by outcome."""
        for outcome, n in (("sent", report.sent), ("retrying", report.retrying), ("failed", report.failed)):
            if n:
                self.deliveries[outcome] += n

    def render(self) -> str:
        """The metrics in the Prometheus text format."""
        lines = [
            *_family(
                "orderwatch_polls_total",
                "counter",
                "Polls by source and outcome (ok, partial, failed, auth_failed).",
                ((_labels(source=s, outcome=o), n) for (s, o), n in sorted(self.polls.items())),
            ),
            *_family(
                "orderwatch_events_total",
                "counter",
                "Events recorded, by source, kind and transition.",
                (
                    (_labels(source=s, kind=k, from_state=f, to_state=t), n)
                    for (s, k, f, t), n in sorted(self.events.items())
                ),
            ),
            *_family(
                "orderwatch_deliveries_total",
                "counter",
                "Outbox rows handled, by outcome (sent, retrying, failed).",
                ((_labels(outcome=o), n) for o, n in sorted(self.deliveries.items())),
            ),
            *_family(
                "orderwatch_outbox_pending",
                "gauge",
                "Notifications waiting to be delivered.",
                [("", self.outbox_depth)],
            ),
            *_family(
                "orderwatch_last_success_timestamp_seconds",
                "gauge",
                "Unix time of the last successful poll, by source.",
                ((_labels(source=s), t) for s, t in sorted(self.last_success.items())),
            ),
            *_family(
                "orderwatch_poll_duration_seconds",
                "gauge",
                "Duration of the last poll, by source.",
                ((_labels(source=s), d) for s, d in sorted(self.poll_duration.items())),
            ),
        ]
        return "\n".join(lines) + "\n"


async def _read_request(stream: anyio.abc.ByteStream) -> bytes:
    data = b""
    with anyio.move_on_after(READ_TIMEOUT):
        while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST:
            data += await stream.receive(MAX_REQUEST)
    return data


async def _respond(metrics: Metrics, stream: anyio.abc.ByteStream) -> None:
    async with stream:
        try:
            request = await _read_request(stream)
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method in (b"GET", b"HEAD") and path in (b"/metrics", b"/"):
                status, body, ctype = "200 OK", metrics.render().encode(), CONTENT_TYPE
            else:
                status, body, ctype = "404 Not Found", b"not found: try /metrics\n", "text/plain; charset=utf-8"
            head = f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            await stream.send(head.encode() + b"Connection: close\r\n\r\n" + (b"" if method == b"HEAD" else body))
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return


async def serve(
    metrics: Metrics, listen: str, *, task_status: anyio.abc.TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``metrics`` on ``listen`` (loopback only) until cancelled; reports the bound address when started."""
    host, port = parse_listen(listen)
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        await _respond(metrics, stream)

    async with listener:
        bound = listener.extra(anyio.abc.SocketAttribute.local_address)  # noqa: S610 (anyio, not Django)
        task_status.started((str(bound[0]), int(bound[1])))
        await listener.serve(handle)

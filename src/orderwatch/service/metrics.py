"""The daemon's metrics: counters and gauges in a private ``prometheus_client`` registry, served on a loopback port.

``prometheus_client`` writes the exposition text. Its own HTTP server is not used: it spends a thread per connection
with no timeout, and at EMFILE its accept loop spins a core for as long as the connections are held. ``serve`` answers
scrapes on the event loop instead, at most ``MAX_CONNECTIONS`` at a time (the rest wait in the kernel's backlog,
holding none of the process's file descriptors), each within ``CONNECTION_DEADLINE``; an ``accept()`` that fails
(too many open files, out of memory) pauses the listener for ``ACCEPT_PAUSE`` instead of ending it. Nothing a client
does can end ``serve``.

Label values are bounded: sources come from the config, kinds and outcomes are fixed, and a state that is not
canonical is labelled ``other`` (``OTHER_STATE``), so an API that invents states cannot grow ``/metrics``.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import structlog
from anyio.streams.stapled import MultiListener
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from orderwatch.core.hosts import is_loopback
from orderwatch.core.model import is_canonical
from orderwatch.errors import ConfigError

if TYPE_CHECKING:
    from orderwatch.delivery.deliverer import DeliveryReport
    from orderwatch.sweep.poller import PollResult

log = structlog.get_logger("orderwatch.service.metrics")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
OTHER_STATE = "other"  # the label of every state that is not canonical
MAX_REQUEST = 8192  # bytes of a request's head read, at most
MAX_CONNECTIONS = 16  # connections answered at once
CONNECTION_DEADLINE = 5.0  # seconds a connection may take, from accept to close
ACCEPT_PAUSE = 0.5  # seconds the listener waits after accept() failed for want of descriptors or memory
BACKLOG = 64  # connections the kernel queues before accept()
_SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` → host and port; ConfigError unless the host is a loopback address."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not is_loopback(host) or not port.isdigit():
        raise ConfigError(f'metrics.listen: expected a loopback host:port like "127.0.0.1:9464", got "{listen}"')
    return host, int(port)


def state_label(state: str | None) -> str:
    """The label value of a state: canonical states as they are, none as ``""``, any other as ``OTHER_STATE``."""
    if not state:
        return ""
    return state if is_canonical(state) else OTHER_STATE


class Metrics(Collector):
    """The daemon's counters and gauges; ``render()`` is the exposition text of its private ``registry``."""

    def __init__(self) -> None:
        self.polls: Counter[tuple[str, str]] = Counter()  # (source, outcome)
        self.events: Counter[tuple[str, str, str, str]] = Counter()  # (source, kind, from, to)
        self.deliveries: Counter[str] = Counter()  # outcome
        self.outbox_depth = 0
        self.last_success: dict[str, float] = {}  # source → unix time
        self.poll_duration: dict[str, float] = {}  # source → seconds of the last poll
        self.accept_errors: Counter[str] = Counter()  # errno name → accept() calls of the metrics server it failed
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def observe_poll(self, result: PollResult, now: float) -> None:
        """Count one poll by outcome (ok, partial, failed, auth_failed) and its events by kind and transition."""
        if result.ok:
            self.last_success[result.source] = now
        self.polls[(result.source, result.outcome.value)] += 1
        self.poll_duration[result.source] = result.duration
        for ev in result.events:
            self.events[(ev.source, ev.kind, state_label(ev.from_state), state_label(ev.to_state))] += 1

    def observe_delivery(self, report: DeliveryReport) -> None:
        """Count one delivery step's rows by outcome."""
        for outcome, n in (("sent", report.sent), ("retrying", report.retrying), ("failed", report.failed)):
            if n:
                self.deliveries[outcome] += n

    def collect(self) -> Iterator[Metric]:
        """The metric families, for the registry."""
        yield _family(
            CounterMetricFamily,
            "orderwatch_polls",
            "Polls by source and outcome (ok, partial, failed, auth_failed).",
            ("source", "outcome"),
            self.polls.items(),
        )
        yield _family(
            CounterMetricFamily,
            "orderwatch_events",
            f'Events recorded, by source, kind and transition (a state that is not canonical is "{OTHER_STATE}").',
            ("source", "kind", "from_state", "to_state"),
            self.events.items(),
        )
        yield _family(
            CounterMetricFamily,
            "orderwatch_deliveries",
            "Outbox rows handled, by outcome (sent, retrying, failed).",
            ("outcome",),
            (((outcome,), n) for outcome, n in self.deliveries.items()),
        )
        yield GaugeMetricFamily(
            "orderwatch_outbox_pending", "Notifications waiting to be delivered.", value=self.outbox_depth
        )
        yield _family(
            GaugeMetricFamily,
            "orderwatch_last_success_timestamp_seconds",
            "Unix time of the last successful poll, by source.",
            ("source",),
            (((source,), when) for source, when in self.last_success.items()),
        )
        yield _family(
            GaugeMetricFamily,
            "orderwatch_poll_duration_seconds",
            "Duration of the last poll, by source.",
            ("source",),
            (((source,), seconds) for source, seconds in self.poll_duration.items()),
        )
        yield _family(
            CounterMetricFamily,
            "orderwatch_metrics_accept_errors",
            "accept() calls of this metrics server that failed for want of file descriptors or memory, by errno.",
            ("error",),
            (((error,), n) for error, n in self.accept_errors.items()),
        )

    def render(self) -> str:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry).decode()


async def bind(listen: str) -> MultiListener[anyio.abc.SocketStream]:
    """Listen on ``listen`` (loopback only): ConfigError for another host, OSError when the port cannot be had."""
    host, port = parse_listen(listen)
    return await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=BACKLOG)


def address(listener: MultiListener[anyio.abc.SocketStream]) -> tuple[str, int]:
    """The host and port ``listener`` is bound to."""
    bound = listener.extra(anyio.abc.SocketAttribute.local_address)  # noqa: S610 (anyio, not Django)
    return str(bound[0]), int(bound[1])


async def serve(metrics: Metrics, listener: MultiListener[anyio.abc.SocketStream]) -> None:
    """Answer scrapes of ``metrics`` on ``listener`` (from ``bind``) until cancelled; then it is closed."""
    sockets = [each for each in listener.listeners if isinstance(each, anyio.abc.SocketListener)]
    slots = anyio.Semaphore(MAX_CONNECTIONS)
    async with listener, anyio.create_task_group() as tg:
        for each in sockets:
            tg.start_soon(_accept_loop, metrics, each, slots, tg)


async def _accept_loop(
    metrics: Metrics, listener: anyio.abc.SocketListener, slots: anyio.Semaphore, tg: anyio.abc.TaskGroup
) -> None:
    failures = 0
    while True:
        await slots.acquire()
        try:
            stream = await listener.accept()
        except OSError as exc:
            slots.release()
            if exc.errno not in _SHORTAGE:
                continue  # the client went away before accept(): nothing to wait for
            error = errno.errorcode[exc.errno]
            metrics.accept_errors[error] += 1
            if failures == 0:
                log.warning("metrics: cannot accept connections; pausing the listener", error=error, pause=ACCEPT_PAUSE)
            failures += 1
            await anyio.sleep(ACCEPT_PAUSE)
            continue
        if failures:
            log.info("metrics: accepting connections again", failed_accepts=failures)
            failures = 0
        tg.start_soon(_answer, metrics, stream, slots)


async def _answer(metrics: Metrics, stream: anyio.abc.SocketStream, slots: anyio.Semaphore) -> None:
    try:
        with anyio.move_on_after(CONNECTION_DEADLINE):
            async with stream:
                head = await _read_head(stream)
                await stream.send(_response(metrics, head))
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    except Exception:
        log.exception("metrics: answering a scrape failed")
    finally:
        slots.release()


async def _read_head(stream: anyio.abc.ByteStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST:
        data += await stream.receive(MAX_REQUEST)
    return data


def _response(metrics: Metrics, request: bytes) -> bytes:
    method, _, rest = request.partition(b" ")
    path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
    if method in (b"GET", b"HEAD") and path in (b"/metrics", b"/"):
        status, body, ctype = "200 OK", metrics.render().encode(), CONTENT_TYPE
    else:
        status, body, ctype = "404 Not Found", b"not found: try /metrics\n", "text/plain; charset=utf-8"
    head = f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + (b"" if method == b"HEAD" else body)


def _family(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    documentation: str,
    labels: tuple[str, ...],
    samples: Iterable[tuple[tuple[str, ...], float]],
) -> Metric:
    """One metric family with a sample per label tuple, in label order."""
    family = kind(name, documentation, labels=labels)
    for values, value in sorted(samples):
        family.add_metric(values, value)
    return family

"""The one HTTP loop: pages through a source, retries what can be retried, and says whether the sweep is complete.

- Pagination is the adapter's (offset or page number); the offset advances by the items received, never by the
  page size asked, because servers clamp page sizes silently.
- Orders are deduplicated by key within a sweep (the later sighting wins: rows pushed down by new orders repeat).
- The sweep is *consistent* only if the totals the API reports did not move during the sweep, the distinct orders
  seen match the last total, and (Laravel) every page started where the previous one ended.
- 429/5xx/timeouts/connection errors/garbled bodies are retried with stamina (exponential backoff with jitter,
  honouring ``Retry-After``) within the source's ``retry_budget``; 401/403 are not retried.
- A failure on the first page raises; a failure later returns what was seen, marked incomplete.
"""

from __future__ import annotations

import email.utils
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
import httpx
import stamina

from orderwatch import __version__
from orderwatch.core.model import Observation, Order, Page
from orderwatch.errors import (
    AuthError,
    HTTPStatusError,
    LimitExceeded,
    SourceError,
    TransportError,
)
from orderwatch.sources import Adapter, Request, Skip, Source, adapter_for

USER_AGENT = f"orderwatch/{__version__}"
RETRY_ATTEMPTS = 4
PAGE_CONCURRENCY = 4  # pages of one sweep fetched at once, when the API tells how many there are


@dataclass(slots=True)
class Tally:
    requests: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Clients:
    """The process's HTTP clients: one ``httpx.AsyncClient``, plus one per distinct CA bundle."""

    _clients: dict[str | None, httpx.AsyncClient] = field(default_factory=dict)

    def for_source(self, src: Source) -> httpx.AsyncClient:
        """The client to use for ``src`` (TLS verification always on; ``ca_bundle`` when set)."""
        key = str(src.ca_bundle) if src.ca_bundle else None
        client = self._clients.get(key)
        if client is None:
            client = httpx.AsyncClient(
                verify=key or True,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


@asynccontextmanager
async def clients() -> AsyncIterator[Clients]:
    """The process's HTTP clients, closed on exit."""
    pool = Clients()
    try:
        yield pool
    finally:
        await pool.aclose()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(src: Source) -> None:
    """Refuse to send a bearer token over plain HTTP to a non-loopback host unless the source allows it."""
    parts = urlsplit(src.base_url)
    if (
        parts.scheme == "http"
        and src.token is not None
        and not src.allow_insecure_http
        and not _is_loopback(parts.hostname or "")
    ):
        raise SourceError(
            src.name,
            f"refusing to send the token over plain http:// to {parts.hostname}; use https:// or set "
            f"sources.{src.name}.allow_insecure_http = true",
        )


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _status_error(src: Source, adapter: Adapter, resp: httpx.Response, body: bytes) -> SourceError:
    status = resp.status_code
    detail = adapter.describe_error(body)
    said = f": {detail}" if detail else ""
    if status in (401, 403):
        return AuthError(
            src.name,
            status,
            f"token rejected ({status}{said}); check sources.{src.name}.token / token_file / token_credential",
        )
    if status == 404:
        return HTTPStatusError(src.name, status, f"404 Not Found at {resp.request.url.path}; check base_url{said}")
    hint = "the server is rate limiting" if status == 429 else "the server failed"
    return HTTPStatusError(
        src.name, status, f"HTTP {status} ({hint}){said}", retry_after=retry_after(resp.headers.get("retry-after"))
    )


async def _send(client: httpx.AsyncClient, src: Source, req: Request, tally: Tally) -> tuple[int, bytes]:
    """One GET; returns (status, body) with the body capped at ``max_response_bytes``."""
    headers = dict(req.headers)
    if src.token is not None:
        headers["Authorization"] = f"Bearer {src.token.reveal()}"
    tally.requests += 1
    cap = src.max_response_bytes
    try:
        async with client.stream(
            "GET", src.base_url + req.path, params=req.params, headers=headers, timeout=src.timeout
        ) as resp:
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise LimitExceeded(src.name, f"answer of {declared} bytes exceeds max_response_bytes ({cap})")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    raise LimitExceeded(src.name, f"answer exceeds max_response_bytes ({cap})")
                chunks.append(chunk)
            tally.bytes += size
            body = b"".join(chunks)
            status = resp.status_code
            if not 200 <= status < 300:
                raise _status_error(src, adapter_for(src), resp, body)
            return status, body
    except httpx.TimeoutException:
        raise TransportError(src.name, f"no answer within {src.timeout:g}s (timeout)") from None
    except httpx.HTTPError as exc:
        raise TransportError(src.name, f"connection failed: {type(exc).__name__}: {exc}") from None


def _retry_hook(deadline: float) -> Callable[[Exception], bool | float]:
    def hook(exc: Exception) -> bool | float:
        if not isinstance(exc, SourceError) or not exc.retryable:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if isinstance(exc, HTTPStatusError) and exc.retry_after is not None:
            return min(exc.retry_after, remaining)
        return True

    return hook


async def _with_retries(src: Source, deadline: float, call: Callable[[], Awaitable[Any]]) -> Any:
    # Nearly every call succeeds at once. The first attempt is made outside stamina, whose machinery (~40 objects a
    # call, and the garbage-collector passes they bring over the freshly parsed page) cost ~0.1 ms a page. A
    # retryable failure is handed to stamina as its own first attempt's, so the hook, the back-off, Retry-After, the
    # on-retry instrumentation and stamina's test mode all work as before.
    try:
        return await call()
    except SourceError as exc:
        if not exc.retryable:
            raise
        failed: SourceError | None = exc
    remaining = max(0.001, deadline - time.monotonic())
    async for attempt in stamina.retry_context(
        on=_retry_hook(deadline),
        attempts=RETRY_ATTEMPTS,
        timeout=remaining,
        wait_initial=0.5,
        wait_max=8.0,
        wait_jitter=1.0,
    ):
        with attempt:
            if failed is not None:
                first, failed = failed, None
                raise first
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover


async def fetch_page(
    client: httpx.AsyncClient, src: Source, req: Request, tally: Tally, deadline: float, skip: Skip | None = None
) -> Page:
    """One list page, retried; raises ``SourceError`` when it cannot be had. ``skip``: see ``sources.Skip``."""
    adapter = adapter_for(src)

    async def once() -> Page:
        _, body = await _send(client, src, req, tally)
        return adapter.parse_list(src, body, skip=skip)

    page: Page = await _with_retries(src, deadline, once)
    return page


class PageSink(Protocol):
    """Takes a sweep's pages in list order."""

    @property
    def skip(self) -> Skip | None:
        """The test that leaves orders the sink has unchanged out of the pages (None: every order is handed over).
        Pages are parsed as they arrive, in any order, and a page may be parsed more than once (retries)."""
        ...

    async def __call__(self, orders: tuple[Order, ...]) -> None: ...

    async def distinct(self) -> int:
        """How many distinct orders (by key) it has taken."""
        ...


class _Collect:
    """The in-memory sink: keeps every order by key (a later sighting of a row pushed down replaces the earlier)."""

    skip = None

    def __init__(self) -> None:
        self.seen: dict[str, Order] = {}

    async def __call__(self, orders: tuple[Order, ...]) -> None:
        for order in orders:
            self.seen[order.key] = order.compact()

    async def distinct(self) -> int:
        return len(self.seen)


@dataclass(slots=True)
class _Sweep:
    """The bookkeeping of one sweep, page by page, in list order."""

    src: Source
    distinct: int = 0
    totals: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    complete: bool = True
    expected_from: int | None = None  # Laravel: where the next page must start
    expected_cursor: int | None = None  # where the previous page says the next one starts
    pages: int = 0

    def add(self, cursor: int, page: Page, adapter: Adapter) -> int | None:
        """Account for one page whose orders the sink took; returns the cursor the page says comes next."""
        self.pages += 1
        if page.total is not None:
            self.totals.append(page.total)
        if self.expected_cursor is not None and cursor != self.expected_cursor:
            self.reasons.append(f"rows were skipped between pages (next page at {self.expected_cursor}, not {cursor})")
        if page.first_item is not None and page.size:
            if self.expected_from is not None and page.first_item != self.expected_from:
                self.reasons.append(
                    f"rows shifted between pages (page started at {page.first_item}, not {self.expected_from})"
                )
            self.expected_from = page.first_item + page.size
        nxt = adapter.next_cursor(cursor, page, self.src.page_size)
        self.expected_cursor = nxt
        return nxt

    def fail(self, reason: str) -> None:
        self.reasons.append(reason)
        self.complete = False

    def observation(self, tally: Tally, orders: Mapping[str, Order], *, full: bool) -> Observation:
        consistent = self.complete and not self.reasons
        if self.complete and self.totals:
            if min(self.totals) != max(self.totals):
                self.reasons.append(f"the total moved during the sweep ({min(self.totals)} … {max(self.totals)})")
                consistent = False
            elif full and self.distinct < self.totals[-1]:
                self.reasons.append(f"saw {self.distinct} distinct orders but the API counts {self.totals[-1]}")
                consistent = False
        return Observation(
            source=self.src.name,
            orders=orders,
            complete=self.complete,
            consistent=consistent,
            full=full,
            reason="; ".join(self.reasons) or None,
            requests=tally.requests,
            bytes=tally.bytes,
            distinct=self.distinct,
        )


async def sweep(
    client: httpx.AsyncClient,
    src: Source,
    *,
    states: Sequence[str] = (),
    stop: Callable[[Page], bool] | None = None,
    concurrency: int = PAGE_CONCURRENCY,
    tally: Tally | None = None,
) -> Observation:
    """Page through the list of ``src`` and keep every order seen (see ``stream``)."""
    sink = _Collect()
    result = await stream(client, src, sink, states=states, stop=stop, concurrency=concurrency, tally=tally)
    return replace(result, orders=sink.seen)


async def stream(
    client: httpx.AsyncClient,
    src: Source,
    sink: PageSink,
    *,
    states: Sequence[str] = (),
    stop: Callable[[Page], bool] | None = None,
    concurrency: int = PAGE_CONCURRENCY,
    tally: Tally | None = None,
) -> Observation:
    """Page through the list of ``src`` — all of it, or only orders in raw ``states`` — newest first, handing each
    page to ``sink`` in list order, so memory does not grow with the size of the list.

    ``stop(page)`` ends the sweep early after a page (the incremental scan for new orders). When the first page
    tells how many pages there are, the rest are fetched ``concurrency`` at a time and handed over in list order.
    Orders the sink's ``skip`` takes as unchanged are left out of the pages as they are parsed.
    The returned observation says how the sweep went; its ``orders`` are empty (the sink has them).
    Raises ``SourceError`` if not even the first page could be had.
    """
    check_transport(src)
    adapter = adapter_for(src)
    deadline = time.monotonic() + src.retry_budget
    tally = tally if tally is not None else Tally()
    acc = _Sweep(src)
    full = not states and stop is None
    skip = sink.skip

    async def get(cursor: int) -> Page:
        return await fetch_page(client, src, adapter.list_request(src, cursor, states=states), tally, deadline, skip)

    async def take(cursor: int, page: Page) -> int | None:
        await sink(page.orders)
        return acc.add(cursor, page, adapter)

    async def done() -> Observation:
        acc.distinct = await sink.distinct()
        return acc.observation(tally, {}, full=full)

    cursor = adapter.first_cursor()
    first = await get(cursor)
    nxt = await take(cursor, first)
    if stop is not None and stop(first):
        nxt = None
    planned = adapter.plan(first, cursor) if stop is None and concurrency > 1 and nxt is not None else []
    planned = planned[: max(0, src.max_pages - 1)]
    if planned and planned[0] == nxt:
        async with _Window(get, planned, concurrency) as pages:
            async for planned_cursor, result in pages:
                if planned_cursor != nxt:
                    break  # a page ended elsewhere than planned (a short page, or the list ended): page on from there
                if isinstance(result, SourceError):
                    acc.fail(f"page at {planned_cursor} failed: {result.message}")
                    return await done()
                nxt = await take(planned_cursor, result)
    # sequential paging: everything after the first page, or what lies beyond the plan (the list grew meanwhile)
    while nxt is not None:
        if acc.pages >= src.max_pages:
            acc.fail(f"stopped after max_pages ({src.max_pages}) pages; raise sources.{src.name}.max_pages")
            break
        try:
            page = await get(nxt)
        except SourceError as exc:
            acc.fail(f"page {acc.pages + 1} failed: {exc.message}")
            break
        nxt = await take(nxt, page)
        if stop is not None and stop(page):
            break
    return await done()


class _Window:
    """Fetches pages at ``cursors`` with ``concurrency`` requests in flight, and hands them over in order, each a page
    or its error; requests keep flowing while the caller works on a page. Leaving the block cancels the rest."""

    def __init__(self, get: Callable[[int], Awaitable[Page]], cursors: Sequence[int], concurrency: int) -> None:
        self._get = get
        self._cursors = cursors
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._ahead = anyio.Semaphore(2 * concurrency)  # pages fetched or in flight, not yet handed over
        self._ready = [anyio.Event() for _ in cursors]
        self._results: dict[int, Page | SourceError] = {}  # fetched, not yet handed over
        self._tg = anyio.create_task_group()
        self._next = 0

    async def __aenter__(self) -> _Window:
        await self._tg.__aenter__()
        self._tg.start_soon(self._feed)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(exc_type, exc, tb)

    async def _feed(self) -> None:
        for i in range(len(self._cursors)):
            await self._ahead.acquire()
            self._tg.start_soon(self._one, i)

    async def _one(self, i: int) -> None:
        async with self._limiter:
            try:
                self._results[i] = await self._get(self._cursors[i])
            except SourceError as exc:
                self._results[i] = exc
        self._ready[i].set()

    def __aiter__(self) -> _Window:
        return self

    async def __anext__(self) -> tuple[int, Page | SourceError]:
        i = self._next
        if i >= len(self._cursors):
            raise StopAsyncIteration
        await self._ready[i].wait()
        result = self._results.pop(i)
        self._next = i + 1
        self._ahead.release()
        return self._cursors[i], result


async def fetch_detail(client: httpx.AsyncClient, src: Source, key: str, *, tally: Tally | None = None) -> Order | None:
    """One order from the detail endpoint; None when the API says 404 (it is gone)."""
    check_transport(src)
    adapter = adapter_for(src)
    deadline = time.monotonic() + min(src.retry_budget, 30.0)
    tally = tally if tally is not None else Tally()

    async def once() -> Order | None:
        try:
            _, body = await _send(client, src, adapter.detail_request(src, key), tally)
        except HTTPStatusError as exc:
            if exc.status == 404:
                return None
            raise
        return adapter.parse_detail(src, body)

    result: Order | None = await _with_retries(src, deadline, once)
    return result

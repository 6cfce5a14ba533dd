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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import stamina

from orderwatch import __version__
from orderwatch.errors import (
    AuthError,
    HTTPStatusError,
    LimitExceeded,
    SourceError,
    TransportError,
)
from orderwatch.model import Observation, Order, Page
from orderwatch.sources import ADAPTERS, Adapter, Request

if TYPE_CHECKING:
    from orderwatch.config import SourceConfig

USER_AGENT = f"orderwatch/{__version__}"
RETRY_ATTEMPTS = 4


@dataclass(slots=True)
class Tally:
    requests: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Clients:
    """The process's HTTP clients: one ``httpx.AsyncClient``, plus one per distinct CA bundle."""

    _clients: dict[str | None, httpx.AsyncClient] = field(default_factory=dict)

    def for_source(self, src: SourceConfig) -> httpx.AsyncClient:
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


def check_transport(src: SourceConfig) -> None:
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


def _status_error(src: SourceConfig, adapter: Adapter, resp: httpx.Response, body: bytes) -> SourceError:
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


async def _send(client: httpx.AsyncClient, src: SourceConfig, req: Request, tally: Tally) -> tuple[int, bytes]:
    """One GET; returns (status, body) with the body capped at ``max_response_bytes``."""
    headers = dict(req.headers)
    if src.token is not None:
        headers["Authorization"] = f"Bearer {src.token.get_secret_value()}"
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
                raise _status_error(src, ADAPTERS[src.kind], resp, body)
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


async def _with_retries(src: SourceConfig, deadline: float, call: Callable[[], Awaitable[Any]]) -> Any:
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
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover


async def fetch_page(client: httpx.AsyncClient, src: SourceConfig, req: Request, tally: Tally, deadline: float) -> Page:
    """One list page, retried; raises ``SourceError`` when it cannot be had."""
    adapter = ADAPTERS[src.kind]

    async def once() -> Page:
        _, body = await _send(client, src, req, tally)
        return adapter.parse_list(src, body)

    page: Page = await _with_retries(src, deadline, once)
    return page


async def sweep(client: httpx.AsyncClient, src: SourceConfig) -> Observation:
    """Page through the whole list of ``src``. Raises ``SourceError`` if not even the first page could be had."""
    check_transport(src)
    adapter = ADAPTERS[src.kind]
    deadline = time.monotonic() + src.retry_budget
    tally = Tally()
    seen: dict[str, Order] = {}
    totals: list[int] = []
    reasons: list[str] = []
    expected_from: int | None = None
    cursor: int | None = adapter.first_cursor()
    pages = 0
    complete = True
    while cursor is not None:
        if pages >= src.max_pages:
            if pages == 0:
                raise LimitExceeded(src.name, "max_pages is 0")
            reasons.append(f"stopped after max_pages ({src.max_pages}) pages; raise sources.{src.name}.max_pages")
            complete = False
            break
        try:
            page = await fetch_page(client, src, adapter.list_request(src, cursor), tally, deadline)
        except SourceError as exc:
            if pages == 0:
                raise
            reasons.append(f"page {pages + 1} failed: {exc.message}")
            complete = False
            break
        pages += 1
        for order in page.orders:
            seen[order.key] = order
        if page.total is not None:
            totals.append(page.total)
        if page.first_item is not None and page.orders:
            if expected_from is not None and page.first_item != expected_from:
                reasons.append(f"rows shifted between pages (page started at {page.first_item}, not {expected_from})")
            expected_from = page.first_item + len(page.orders)
        cursor = adapter.next_cursor(cursor, page, src.page_size)

    consistent = complete and not reasons
    if complete and totals:
        if min(totals) != max(totals):
            reasons.append(f"the total moved during the sweep ({totals[0]} → {totals[-1]})")
            consistent = False
        elif len(seen) != totals[-1]:
            reasons.append(f"saw {len(seen)} distinct orders but the API counts {totals[-1]}")
            consistent = False
    return Observation(
        source=src.name,
        orders=seen,
        complete=complete,
        consistent=consistent,
        full=True,
        reason="; ".join(reasons) or None,
        requests=tally.requests,
        bytes=tally.bytes,
    )


async def fetch_detail(client: httpx.AsyncClient, src: SourceConfig, key: str) -> Order | None:
    """One order from the detail endpoint; None when the API says 404 (it is gone)."""
    check_transport(src)
    adapter = ADAPTERS[src.kind]
    deadline = time.monotonic() + min(src.retry_budget, 30.0)
    tally = Tally()

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

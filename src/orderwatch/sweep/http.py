"""HTTP for sources: the process's clients, and one GET with its limits, redirects, errors and retries.

- Every request has a total deadline (``timeout``: connecting, the headers and the whole body), so a server that
  drips its answer a byte at a time fails that request instead of holding the poll.
- Answers are capped at ``max_response_bytes`` (declared or streamed).
- Same-origin redirects are followed (a DRF server answers a slash-less path with 301); a redirect elsewhere is an
  error naming where it pointed, and the token never goes there.
- 408/409/425/429/5xx, timeouts, connection errors and garbled bodies are retried with stamina (exponential back-off
  with jitter, honouring ``Retry-After``) within the poll's ``retry_budget``; 401/403 are not retried.
- Text taken from an answer (an error message) never carries the source's token back out.
"""

from __future__ import annotations

import base64
import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import anyio
import httpx
import stamina

from orderwatch import __version__
from orderwatch.core.hosts import is_loopback
from orderwatch.core.model import Order, Page
from orderwatch.errors import AuthError, HTTPStatusError, LimitExceeded, MalformedResponse, SourceError, TransportError
from orderwatch.sources import Request, Skip, Source, adapter_for

USER_AGENT: Final = f"orderwatch/{__version__}"
RETRY_ATTEMPTS: Final = 4
MAX_REDIRECTS: Final = 3
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
T = TypeVar("T")


@dataclass(slots=True)
class Tally:
    """Requests made and answer bytes received, for one poll."""

    requests: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Clients:
    """The process's HTTP clients: one ``httpx.AsyncClient``, plus one per distinct CA bundle. ``transport``
    replaces the network (tests hand in ``httpx.MockTransport``)."""

    transport: httpx.AsyncBaseTransport | None = None
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
                transport=self.transport,
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


@asynccontextmanager
async def clients(transport: httpx.AsyncBaseTransport | None = None) -> AsyncIterator[Clients]:
    """The process's HTTP clients, closed on exit."""
    pool = Clients(transport)
    try:
        yield pool
    finally:
        await pool.aclose()


def check_transport(src: Source) -> None:
    """Refuse to send a token over plain HTTP to a non-loopback host unless the source allows it (the config
    refuses such a source already; this guards sources built elsewhere)."""
    parts = urlsplit(src.base_url)
    if (
        parts.scheme == "http"
        and src.token is not None
        and not src.allow_insecure_http
        and not is_loopback(parts.hostname)
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


def _without_token(src: Source, text: str) -> str:
    """``text`` with the source's token taken out, in the forms an echoing server or proxy sends it back."""
    if src.token is None or not text:
        return text
    token = src.token.reveal()
    forms = {token, quote(token, safe=""), base64.b64encode(token.encode()).decode()}
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= 4:
            text = text.replace(form, "***")
    return text


def _status_error(src: Source, resp: httpx.Response, body: bytes) -> SourceError:
    status = resp.status_code
    detail = adapter_for(src).describe_error(body)
    said = f": {_without_token(src, ' '.join(detail.split())[:300])}" if detail else ""
    if status in (401, 403):
        return AuthError(
            src.name,
            status,
            f"token rejected ({status}{said}); check sources.{src.name}.token / token_file / token_credential",
        )
    if status == 404:
        return HTTPStatusError(src.name, status, f"404 Not Found at {resp.request.url.path}; check base_url{said}")
    if status in _REDIRECTS:
        where = resp.headers.get("location", "")
        return HTTPStatusError(
            src.name, status, f"HTTP {status} redirect to {_without_token(src, where)[:200] or 'nowhere'}{said}"
        )
    hint = "the server is rate limiting" if status == 429 else "the server failed"
    return HTTPStatusError(
        src.name, status, f"HTTP {status} ({hint}){said}", retry_after=retry_after(resp.headers.get("retry-after"))
    )


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _auth(src: Source, headers: dict[str, str], url: httpx.URL) -> httpx.URL:
    """Put the token where ``src.auth`` says (a header, or a query parameter); the URL to request."""
    if src.token is None:
        return url
    token = src.token.reveal()
    style, _, name = src.auth.partition(":")
    if style == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    elif style == "header" and name:
        headers[name] = token
    elif style == "query" and name:
        return url.copy_set_param(name, token)
    else:
        headers["Authorization"] = f"Bearer {token}"
    return url


async def send(client: httpx.AsyncClient, src: Source, req: Request, tally: Tally) -> bytes:
    """One GET (following same-origin redirects) within ``src.timeout`` in all; the body of a 2xx answer, capped at
    ``max_response_bytes``. Raises ``SourceError`` for anything else."""
    body, _ = await exchange(client, src, req, tally)
    return body


async def exchange(client: httpx.AsyncClient, src: Source, req: Request, tally: Tally) -> tuple[bytes, httpx.Headers]:
    """``send``, with the answer's headers (paging and totals of some APIs are there)."""
    check_transport(src)
    headers = dict(req.headers)
    if req.url is not None:
        url = httpx.URL(req.url)
        if not _same_origin(url, httpx.URL(src.base_url)):
            raise HTTPStatusError(
                src.name, 310, f"refusing to follow a next-page URL to another origin ({url.scheme}://{url.host})"
            )
    else:
        url = httpx.URL(src.base_url + req.path, params=req.params)
    url = _auth(src, headers, url)
    try:
        with anyio.fail_after(src.timeout):
            for _ in range(MAX_REDIRECTS + 1):
                status, body, location, answered = await _get(client, src, url, headers, tally)
                if location is None:
                    return body, answered
                target = httpx.URL(urljoin(str(url), location))
                if not _same_origin(url, target):
                    raise HTTPStatusError(
                        src.name,
                        status,
                        f"HTTP {status} redirect to another origin ({target.scheme}://{target.host}); not followed "
                        f"(the token stays here): check sources.{src.name}.base_url",
                    )
                url = _auth(src, headers, target)  # a query-parameter token goes along to the same origin
    except TimeoutError:
        raise TransportError(src.name, f"no complete answer within {src.timeout:g}s (timeout)") from None
    raise HTTPStatusError(src.name, 310, f"more than {MAX_REDIRECTS} redirects from {url.path}")


async def _get(
    client: httpx.AsyncClient, src: Source, url: httpx.URL, headers: dict[str, str], tally: Tally
) -> tuple[int, bytes, str | None, httpx.Headers]:
    """One exchange: (status, body, the Location of a redirect or None, the answer's headers)."""
    tally.requests += 1
    cap = src.max_response_bytes
    try:
        async with client.stream("GET", url, headers=headers, timeout=src.timeout) as resp:
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
            if status in _REDIRECTS and resp.headers.get("location"):
                return status, body, resp.headers["location"], resp.headers
            if not 200 <= status < 300:
                raise _status_error(src, resp, body)
            return status, body, None, resp.headers
    except httpx.TimeoutException:
        raise TransportError(src.name, f"no answer within {src.timeout:g}s (timeout)") from None
    except httpx.HTTPError as exc:
        raise TransportError(src.name, _without_token(src, f"connection failed: {type(exc).__name__}: {exc}")) from None


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


async def with_retries(deadline: float, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, retried while it fails with a retryable ``SourceError`` and ``deadline`` (monotonic) allows."""
    # Nearly every call succeeds at once. The first attempt is made outside stamina, whose machinery (~40 objects a
    # call, and the garbage-collector passes they bring over the freshly parsed page) would cost ~0.1 ms a page. A
    # retryable failure is handed to stamina as its own first attempt's, so the hook, the back-off, Retry-After, the
    # on-retry instrumentation and stamina's test mode all apply.
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


@contextmanager
def unreadable_is_malformed(src: Source) -> Iterator[None]:
    """Whatever bytes an API sends end as a failure of that source with a reason, never as a crash of the poll:
    a parser that runs out of stack or memory, or meets text that is not Unicode, is a ``MalformedResponse``."""
    try:
        yield
    except RecursionError:
        raise MalformedResponse(src.name, "answer is nested too deeply to read") from None
    except MemoryError:
        raise MalformedResponse(src.name, "answer is too large to read into memory") from None
    except UnicodeError as exc:
        raise MalformedResponse(
            src.name, f"answer holds text that is not valid Unicode ({type(exc).__name__})"
        ) from None


async def fetch_page(
    client: httpx.AsyncClient, src: Source, req: Request, tally: Tally, deadline: float, skip: Skip | None = None
) -> Page:
    """One list page, retried; raises ``SourceError`` when it cannot be had. ``skip``: see ``sources.Skip``."""
    adapter = adapter_for(src)

    async def once() -> Page:
        body, headers = await exchange(client, src, req, tally)
        with unreadable_is_malformed(src):
            return adapter.parse_list(src, body, skip=skip, headers=headers)

    return await with_retries(deadline, once)


async def fetch_detail(client: httpx.AsyncClient, src: Source, key: str, tally: Tally, deadline: float) -> Order | None:
    """One order from the detail endpoint, retried; None when every spelling of its path answers 404. The answer
    is not checked here to be the order asked for: the caller does that (``Order.key``)."""
    adapter = adapter_for(src)
    requests = [adapter.detail_request(src, key)]
    if (fallback := adapter.detail_fallback(src, key)) is not None:
        requests.append(fallback)

    async def once() -> Order | None:
        for req in requests:
            try:
                body = await send(client, src, req, tally)
            except HTTPStatusError as exc:
                if exc.status == 404:
                    continue
                raise
            with unreadable_is_malformed(src):
                return adapter.parse_detail(src, body)
        return None

    return await with_retries(deadline, once)

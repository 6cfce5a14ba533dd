"""What travels back over the wire: the answers of both APIs, as the real servers write them.

Pure functions over order dicts: list pages in each paginator's shape (under the server's ``Conventions``), error
bodies, redirects and faults. Requests are read in ``queries.py``; the state and its lock live in ``state.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson

if TYPE_CHECKING:
    from orderwatch.simulator.conventions import Conventions, Count

Params = dict[str, list[str]]
JSON: Final = "application/json"
HTML: Final = "text/html; charset=UTF-8"
_HTML_502: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    b"\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_TITLES: Final = {401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 429: "Too Many Requests"}
_STATUS_TEXT: Final = {
    "http500": (500, "Server Error"),
    "http502": (502, "Bad Gateway"),
    "http503": (503, "Service Unavailable"),
}
_DJANGO_HTML: Final = "text/html; charset=utf-8"
_DJANGO_404: Final = (
    b'<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1>'
    b"<p>The requested resource was not found on this server.</p>\n</body>\n</html>\n"
)
_CLAIMS: Final[Mapping[str, Callable[[int], int | str | None]]] = {
    "true": lambda n: n,
    "low": lambda n: n // 3,
    "high": lambda n: n * 10,
    "huge": lambda _: 10**12,
    "zero": lambda _: 0,
    "negative": lambda _: -1,
    "null": lambda _: None,
    "string": lambda _: "many",
    "missing": lambda _: None,
}


@dataclass(slots=True)
class SimResponse:
    """An HTTP answer: status, body, content type, extra headers, and a delay before sending (``slow``)."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)
    delay: float = 0.0


def ts(dt: datetime, *, whole_seconds: bool = False) -> str:
    """``2024-06-15T10:00:00.123456Z`` (Lsky stores whole seconds: ``.000000Z``)."""
    dt = dt if dt.tzinfo is UTC else dt.astimezone(UTC)
    return (dt.replace(microsecond=0) if whole_seconds else dt).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def int_param(values: list[str] | None, default: int, *, minimum: int = 1) -> int:
    """The first value as an integer >= ``minimum``, else ``default`` (what DRF and Laravel do with junk)."""
    try:
        value = int(values[0]) if values and values[0] else default
    except ValueError:
        return default
    return value if value >= minimum else default


def lsky_wrap(data: Any, unix: int) -> dict[str, Any]:
    """The Lsky success wrapper ``{status, message, data, time}``."""
    return {"status": "success", "message": "successful", "data": data, "time": unix}


def window(rows: list[dict[str, Any]], start: int, size: int, *, reverse: bool) -> list[dict[str, Any]]:
    """``rows[start:start + size]`` of ``rows`` (reversed first when ``reverse``), without copying all rows."""
    if not reverse:
        return rows[start : start + size]
    end = len(rows) - start
    return rows[max(0, end - size) : max(0, end)][::-1]


def claimed(count: int, lie: Count) -> int | str | None:
    """The count a server under ``lie`` claims for ``count`` matching rows (``missing``: the caller drops it)."""
    return _CLAIMS[lie](count)


def drf_link(url: str, limit: int, offset: int) -> str:
    """DRF's ``replace_query_param``: ``url`` with ``limit`` and ``offset`` set (``offset`` dropped at 0), the
    query sorted by name."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    query["limit"] = [str(limit)]
    query.pop("offset", None)
    if offset > 0:
        query["offset"] = [str(offset)]
    return urlunsplit(parts._replace(query=urlencode(sorted(query.items()), doseq=True)))


def ace_page(
    rows: list[dict[str, Any]], *, reverse: bool, params: Params, max_size: int, conventions: Conventions, url: str
) -> bytes:
    """``{"count": N, "items": [...]}`` for ``limit``/``offset`` (limit silently clamped; default 20).

    ``conventions`` choose the list key, whether ``count`` lies, and DRF's ``next``/``previous`` links (built from
    ``url``, the absolute URL asked, and from the claimed count when it is a number, as DRF computes them).
    """
    limit = min(int_param(params.get("limit"), 20), max_size)
    offset = int_param(params.get("offset"), 0, minimum=0)
    body: dict[str, Any] = {}
    claim = claimed(len(rows), conventions.ace_count)
    if conventions.ace_count != "missing":
        body["count"] = claim
    if conventions.ace_links == "drf":
        known = claim if isinstance(claim, int) else len(rows)
        body["next"] = None if offset + limit >= known else drf_link(url, limit, offset + limit)
        body["previous"] = None if offset <= 0 else drf_link(url, limit, max(0, offset - limit))
    body[conventions.ace_list] = window(rows, offset, limit, reverse=reverse)
    return orjson.dumps(body)


def lsky_page(
    selected: list[dict[str, Any]],
    *,
    reverse: bool,
    params: Params,
    path: str,
    max_size: int,
    unix: int,
    conventions: Conventions,
) -> bytes:
    """A Laravel paginator page in the shape ``conventions`` choose (null ``from``/``to`` past the end).

    A lying total moves ``last_page`` and the links with it when it is a number (Laravel derives them from the
    total); otherwise the links follow the truth. The rows are always the true page.
    """
    per_page = min(int_param(params.get("per_page"), 20), max_size, 9999)
    page = int_param(params.get("page"), 1)
    rows = window(selected, (page - 1) * per_page, per_page, reverse=reverse)
    first = (page - 1) * per_page + 1 if rows else None
    to = first + len(rows) - 1 if first else None
    prev = f"{path}?page={page - 1}" if page > 1 else None
    if conventions.lsky_paginator == "simple":  # simplePaginate: one row more than a page says if there is more
        more = page * per_page < len(selected)
        simple = {
            "current_page": page,
            "current_page_url": f"{path}?page={page}",
            "data": rows,
            "first_page_url": f"{path}?page=1",
            "from": first,
            "next_page_url": f"{path}?page={page + 1}" if more else None,
            "path": path,
            "per_page": per_page,
            "prev_page_url": prev,
            "to": to,
        }
        return orjson.dumps(lsky_wrap(simple, unix))
    claim = claimed(len(selected), conventions.lsky_count)
    last = max(1, math.ceil((claim if isinstance(claim, int) else len(selected)) / per_page))
    counted = {} if conventions.lsky_count == "missing" else {"total": claim}
    lasts = {} if conventions.lsky_count == "missing" else {"last_page": last if isinstance(claim, int) else claim}
    nxt = f"{path}?page={page + 1}" if page < last else None
    if conventions.lsky_paginator == "plain":  # LengthAwarePaginator::toArray()
        plain = {
            "current_page": page,
            "data": rows,
            "first_page_url": f"{path}?page=1",
            "from": first,
            **lasts,
            "last_page_url": f"{path}?page={last}",
            "links": page_links(path, page, last),
            "next_page_url": nxt,
            "path": path,
            "per_page": per_page,
            "prev_page_url": prev,
            "to": to,
            **counted,
        }
        return orjson.dumps(lsky_wrap(plain, unix))
    meta = {
        "current_page": page,
        "from": first,
        **lasts,
        "links": page_links(path, page, last),
        "path": path,
        "per_page": per_page,
        "to": to,
        **counted,
    }
    links = {"first": f"{path}?page=1", "last": f"{path}?page={last}", "prev": prev, "next": nxt}
    return orjson.dumps(lsky_wrap({"data": rows, "links": links, "meta": meta}, unix))


def page_links(path: str, page: int, last: int) -> list[dict[str, Any]]:
    """Laravel's ``meta.links``: previous, a window of page numbers (with ``...`` gaps), next."""

    def link(n: int) -> dict[str, Any]:
        return {"url": f"{path}?page={n}", "label": str(n), "active": n == page}

    dots = {"url": None, "label": "...", "active": False}
    if last < 14:
        window = [link(n) for n in range(1, last + 1)]
    elif page <= 7:
        window = [*map(link, range(1, 11)), dots, link(last - 1), link(last)]
    elif page > last - 7:
        window = [link(1), link(2), dots, *map(link, range(last - 9, last + 1))]
    else:
        window = [link(1), link(2), dots, *map(link, range(page - 3, page + 4)), dots, link(last - 1), link(last)]
    prev = {"url": f"{path}?page={page - 1}" if page > 1 else None, "label": "« 上一页", "active": False}
    nxt = {"url": f"{path}?page={page + 1}" if page < last else None, "label": "下一页 »", "active": False}
    return [prev, *window, nxt]


def ace_error(code: str, message: str, trace_id: str) -> bytes:
    """The Ace error envelope ``{"error": {code, message}, "trace_id"}``."""
    return orjson.dumps({"error": {"code": code, "message": message}, "trace_id": trace_id})


def unauthorized(api: str, *, invalid: bool, trace_id: str) -> SimResponse:
    """The 401 each API sends: Sanctum's ``Unauthenticated.``; DRF's ``detail`` or Ace's ``invalid_token``."""
    if api == "lsky":
        return SimResponse(401, orjson.dumps({"message": "Unauthenticated."}))
    if invalid:
        return SimResponse(401, ace_error("invalid_token", "The token is invalid or has been revoked.", trace_id))
    return SimResponse(401, orjson.dumps({"detail": "Authentication credentials were not provided."}))


def not_found(api: str, unix: int) -> SimResponse:
    """The 404 of a detail endpoint."""
    if api == "ace":
        return SimResponse(404, orjson.dumps({"detail": "Not found."}))
    return SimResponse(404, orjson.dumps({"status": "error", "message": "订单不存在", "data": {}, "time": unix}))


def unrouted(api: str, path: str) -> SimResponse:
    """The 404 of a path no route matches, which the framework answers before any view (and auth) runs."""
    if api == "ace":  # Django, DEBUG off
        return SimResponse(404, _DJANGO_404, _DJANGO_HTML)
    return SimResponse(404, orjson.dumps({"message": f"The route {path.lstrip('/')} could not be found."}))


def moved_permanently(location: str) -> SimResponse:
    """Django's ``HttpResponsePermanentRedirect``: 301, an empty HTML body, ``Location`` as given."""
    return SimResponse(301, b"", _DJANGO_HTML, headers=[("Location", location)])


def method_not_allowed(api: str, method: str) -> SimResponse:
    """The 405 for anything but GET."""
    if api == "ace":
        return SimResponse(405, orjson.dumps({"detail": f'Method "{method}" not allowed.'}))
    return SimResponse(405, orjson.dumps({"message": f"The {method} method is not supported for this route."}))


def fault_response(api: str, fault: str, *, trace_id: str, unix: int) -> SimResponse:
    """The answer for a fault that replaces the real answer (HTTP errors, HTML, 429, error body, auth)."""
    ace = api == "ace"
    if fault == "html":
        return SimResponse(502, _HTML_502, HTML)
    if fault == "auth":
        return unauthorized(api, invalid=True, trace_id=trace_id)
    if fault == "rate_limit":
        if ace:
            body = ace_error("too_many_requests", "Request was throttled.", trace_id)
        else:
            body = orjson.dumps({"message": "Too Many Attempts."})
        return SimResponse(429, body, headers=[("Retry-After", "1")])
    if fault == "error_body":
        if ace:
            return SimResponse(200, ace_error("internal", "An internal error occurred.", trace_id))
        return SimResponse(200, orjson.dumps({"status": "error", "message": "服务异常", "data": {}, "time": unix}))
    status, text = _STATUS_TEXT[fault]
    return SimResponse(status, orjson.dumps({"detail": text} if ace else {"message": text}))


def wants_json(headers: Mapping[str, str]) -> bool:
    """Laravel's ``expectsJson``: an XHR, or an Accept header whose first type is JSON."""
    first = headers.get("accept", "").split(",")[0]
    return headers.get("x-requested-with") == "XMLHttpRequest" or "/json" in first or "+json" in first


def html_error(status: int) -> SimResponse:
    """Laravel's HTML error page, sent when the client did not ask for JSON."""
    title = _TITLES.get(status, "Server Error")
    page = f'<!DOCTYPE html><html lang="en"><head><title>{title}</title></head><body>{status} | {title}</body></html>'
    return SimResponse(status, page.encode(), HTML)

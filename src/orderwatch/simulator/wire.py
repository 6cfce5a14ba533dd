"""What travels over the wire: query parsing and response bodies of both APIs, as the real servers write them.

Pure functions over order dicts; the state and its lock live in ``state.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

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


def multi(values: list[str] | None) -> set[str]:
    """A multi-valued parameter: repeated parameters and comma-separated values are both accepted."""
    return {v.strip() for raw in values or () for v in raw.split(",") if v.strip()}


@dataclass(frozen=True, slots=True)
class AceQuery:
    """The filters and ordering of one Ace list request."""

    created_from: str | None
    created_to: str | None
    states: set[str]
    pay_ways: set[str]
    users: set[str]
    ordering: str  # "created_at", "-created_at", or "" for the undocumented default

    @property
    def filters_rows(self) -> bool:
        """True when rows must be checked one by one (the date range is done by bisection)."""
        return bool(self.states or self.pay_ways or self.users)

    def matches(self, order: Mapping[str, Any]) -> bool:
        """Whether ``order`` passes the state, pay_way and user_id filters."""
        return (
            (not self.states or order["state"] in self.states)
            and (not self.pay_ways or order["pay_way"] in self.pay_ways)
            and (not self.users or order["user_id"] in self.users)
        )


def parse_ace_query(params: Params) -> AceQuery | SimResponse:
    """Parse an Ace list query; a bad ISO 8601 date is a 400 like Django's form errors."""
    bounds: dict[str, str | None] = {}
    for name in ("created_at_from", "created_at_to"):
        raw = (params.get(name) or [""])[0]
        try:
            parsed = datetime.fromisoformat(raw) if raw else None
        except ValueError:
            return SimResponse(400, orjson.dumps({name: ["Enter a valid date/time."]}))
        bounds[name] = ts(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)) if parsed else None
    ordering = (params.get("ordering") or [""])[0].split(",")[0].strip()
    return AceQuery(
        bounds["created_at_from"],
        bounds["created_at_to"],
        multi(params.get("state")),
        multi(params.get("pay_way")),
        multi(params.get("user_id")),
        ordering if ordering in {"created_at", "-created_at"} else "",
    )


def window(rows: list[dict[str, Any]], start: int, size: int, *, reverse: bool) -> list[dict[str, Any]]:
    """``rows[start:start + size]`` of ``rows`` (reversed first when ``reverse``), without copying all rows."""
    if not reverse:
        return rows[start : start + size]
    end = len(rows) - start
    return rows[max(0, end - size) : max(0, end)][::-1]


def ace_page(rows: list[dict[str, Any]], *, reverse: bool, params: Params, max_size: int, key: str) -> bytes:
    """``{"count": N, key: [...]}`` for ``limit``/``offset`` (limit silently clamped; default 20)."""
    limit = min(int_param(params.get("limit"), 20), max_size)
    offset = int_param(params.get("offset"), 0, minimum=0)
    return orjson.dumps({"count": len(rows), key: window(rows, offset, limit, reverse=reverse)})


@dataclass(frozen=True, slots=True)
class LskyQuery:
    """The ``q`` tokens of one Lsky list request: ``sort:latest|oldest``, ``status:=:a,b``, bare words."""

    sort: str = ""
    include: set[str] = field(default_factory=set)
    exclude: set[str] = field(default_factory=set)
    words: list[str] = field(default_factory=list)

    @property
    def filters_rows(self) -> bool:
        """True when the request filters rows."""
        return bool(self.include or self.exclude or self.words)

    def matches(self, order: Mapping[str, Any]) -> bool:
        """Whether ``order`` passes the status filters and contains every bare word in its trade number."""
        status = order["status"]
        return (
            (not self.include or status in self.include)
            and status not in self.exclude
            and all(w in order["trade_no"] for w in self.words)
        )


def parse_lsky_query(params: Params) -> LskyQuery:
    """Parse ``q`` (space-separated tokens; unknown ``key:value`` tokens are ignored)."""
    query = LskyQuery()
    sort = ""
    for token in (params.get("q") or [""])[0].split():
        key, _, rest = token.partition(":")
        if not rest:
            query.words.append(token)
        elif key == "sort":
            sort = rest
        elif key == "status":
            op, _, values = rest.partition(":") if ":" in rest else ("=", "", rest)
            if op in {"=", "!="}:
                (query.include if op == "=" else query.exclude).update(v for v in values.split(",") if v)
    return LskyQuery(sort, query.include, query.exclude, query.words)


def lsky_wrap(data: Any, unix: int) -> dict[str, Any]:
    """The Lsky success wrapper ``{status, message, data, time}``."""
    return {"status": "success", "message": "successful", "data": data, "time": unix}


def lsky_page(
    selected: list[dict[str, Any]], *, reverse: bool, params: Params, path: str, max_size: int, unix: int
) -> bytes:
    """A Laravel paginator page: ``data``, ``links`` and ``meta`` (null ``from``/``to`` past the end)."""
    per_page = min(int_param(params.get("per_page"), 20), max_size, 9999)
    page = int_param(params.get("page"), 1)
    total = len(selected)
    last = max(1, math.ceil(total / per_page))
    rows = window(selected, (page - 1) * per_page, per_page, reverse=reverse)
    first = (page - 1) * per_page + 1 if rows else None
    meta = {
        "current_page": page,
        "from": first,
        "last_page": last,
        "links": page_links(path, page, last),
        "path": path,
        "per_page": per_page,
        "to": first + len(rows) - 1 if first else None,
        "total": total,
    }
    links = {
        "first": f"{path}?page=1",
        "last": f"{path}?page={last}",
        "prev": f"{path}?page={page - 1}" if page > 1 else None,
        "next": f"{path}?page={page + 1}" if page < last else None,
    }
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

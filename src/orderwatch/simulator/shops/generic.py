"""A configurable JSON orders API (``GenericOptions``): every paging style, body layout and credential style a
generic client supports, with plain ``{"error": {"code", "message"}}`` errors.

Cursors are keyset cursors on (creation time, creation rank), so paging by ``cursor``, ``link`` or the last key
neither repeats nor skips rows while orders arrive or leave; ``offset`` and ``page`` shift like any SQL
``OFFSET``. A deleted order's key stays valid as a ``last_key`` cursor."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from orderwatch.simulator.shops.dialect import Dialect, Request, json_response
from orderwatch.simulator.shops.dotted import put_path
from orderwatch.simulator.shops.generic_config import GenericOptions
from orderwatch.simulator.shops.ids import ulid, uuid4
from orderwatch.simulator.shops.keyset import Ordering, SortKey
from orderwatch.simulator.shops.links import build_url, link_header, with_params
from orderwatch.simulator.shops.people import person
from orderwatch.simulator.shops.store import Row
from orderwatch.simulator.shops.timefmt import aware, iso_z, parse_iso, unix
from orderwatch.simulator.wire import SimResponse

_METHODS: Final = ("card", "paypal", "bank_transfer", "apple_pay")


class _BadParam(Exception):
    """A query parameter the API refuses (400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param, self.message = param, message


class GenericDialect(Dialect):
    """A JSON orders API shaped by ``GenericOptions``."""

    api = "generic"
    prefixes = ("/",)
    default_token = "generic-token-0123456789abcdef"

    def __init__(self, options: GenericOptions, **kw: Any) -> None:
        self.options = options
        self.transitions = dict(options.transitions)
        self.births = options.births
        self.initial = options.births[0][0]
        self.delete_share = 0.04 if options.deletable else 0.0
        self.whole_seconds = options.time_format != "iso_micro"
        if kw.get("token") is None and options.auth == "basic":
            kw["token"] = "orderwatch:generic-secret"
        super().__init__(**kw)
        detail_prefix = (options.detail_path.split("{key}")[0],) if options.detail_path else ()
        self.prefixes = (options.path, *detail_prefix)
        self._detail = _template(options.detail_path) if options.detail_path else None
        self._next_id = 1000
        self._gone: dict[str, SortKey] = {}  # deleted keys still work as last-key cursors
        descending = options.order == "newest"
        self._ordering = Ordering(lambda r: (r.created, r.seq), descending)

    @property
    def list_path(self) -> str:
        return self.options.path

    def auth_headers(self) -> dict[str, str]:
        auth = self.options.auth
        if auth == "bearer":
            return {"authorization": f"Bearer {self.token}"}
        if auth == "basic":
            return {"authorization": "Basic " + base64.b64encode(self.token.encode()).decode()}
        if auth.startswith("header:"):
            return {auth.removeprefix("header:").lower(): self.token}
        return {}

    def auth_params(self) -> dict[str, str]:
        auth = self.options.auth
        return {auth.removeprefix("query:"): self.token} if auth.startswith("query:") else {}

    # Orders ------------------------------------------------------------------------------------------------
    def build(self, state: str) -> Row:
        core, rng, opts = self.core, self.core.rng, self.options
        created = core.creation_time()
        self._next_id += 1
        key: int | str = self._next_id
        if opts.key_style == "uuid":
            key = uuid4(rng)
        elif opts.key_style == "prefixed":
            key = f"ord_{ulid(created, rng)}"
        who = person(rng)
        body: dict[str, Any] = {
            "amount": {"value": f"{rng.choice((9.99, 24.5, 49.0, 120.0)):.2f}", "currency": "EUR"},
            "customer": {"name": f"{who.first} {who.last}", "email": who.email},
            "payment_method": rng.choice(_METHODS),
        }
        put_path(body, opts.key, key)
        row = Row(str(key), core.store.next_seq(), state, created, created, body)
        if opts.created:
            put_path(body, opts.created, self._time(created))
        self._apply(row)
        return row

    def on_state(self, row: Row, before: str) -> None:
        self._apply(row)

    def on_touch(self, row: Row) -> None:
        if self.options.updated:
            put_path(row.body, self.options.updated, self._time(row.updated))

    def _apply(self, row: Row) -> None:
        put_path(row.body, self.options.state, row.state)
        self.on_touch(row)

    def _time(self, at: datetime) -> str | int:
        fmt = self.options.time_format
        return unix(at) if fmt == "unix" else iso_z(at, micro=fmt == "iso_micro")

    def why_undeletable(self, row: Row) -> str | None:
        return None if self.options.deletable else "this generic API does not delete orders"

    def delete_candidates(self) -> list[str]:
        if not self.options.deletable:
            return []
        done = [s for s, nxt in self.transitions.items() if not nxt]
        return [k for s in done for k in self.core.store.keys_in(s)]

    def remove(self, row: Row) -> None:
        self._gone[row.key] = self._ordering.key(row)  # a deleted key still works as a cursor
        super().remove(row)

    # HTTP --------------------------------------------------------------------------------------------------
    def gate(self, req: Request) -> SimResponse | None:
        detail = self._detail.match(req.path) if self._detail else None
        if req.path != self.options.path and detail is None:
            return self.not_found(req)
        if not self._authenticated(req):
            return self.unauthorized(req)
        if detail is None:
            try:
                self._plan(req)
            except _BadParam as bad:
                return self._error(400, "invalid_parameter", bad.message, param=bad.param)
        return None

    def answer(self, req: Request) -> SimResponse:
        detail = self._detail.match(req.path) if self._detail else None
        if detail is not None:
            row = self.core.store.get(detail["key"])
            return json_response(200, self.render(row, req.base_url)) if row else self.not_found(req)
        rows, page, more, next_cursor = self._plan(req)
        opts = self.options
        items = [self.render(r, req.base_url) for r in page]
        headers: list[tuple[str, str]] = []
        body: Any = items if opts.items == "" else {}
        if opts.items:
            put_path(body, opts.items, items)
        if opts.total and opts.total.startswith("header:"):
            headers.append((opts.total.removeprefix("header:"), str(len(rows))))
        elif opts.total:
            put_path(body, opts.total, len(rows))
        if opts.has_more:
            put_path(body, opts.has_more, more)
        if opts.paging == "cursor" and opts.cursor != "last_key":
            put_path(body, opts.cursor, next_cursor if more else None)
        if opts.paging == "link" and more and next_cursor:
            url = build_url(req.base_url, opts.path, with_params(req.pairs, {opts.cursor_param: next_cursor}))
            headers.append(("Link", link_header([(url, "next")])))
        return json_response(200, body, headers)

    def _plan(self, req: Request) -> tuple[list[Row], list[Row], bool, str | None]:
        """(matching rows, this page, whether more follow, the next opaque cursor); raises ``_BadParam``."""
        opts = self.options
        ordering = self._ordering
        if opts.order_param and (direction := req.first(opts.order_param)) is not None:
            if direction.lower() not in {"asc", "desc"}:
                raise _BadParam(opts.order_param, f"{opts.order_param} must be asc or desc")
            ordering = Ordering(ordering.key, direction.lower() == "desc")
        rows = ordering.apply([r for r in self.core.store.rows() if all(c(r) for c in self._filters(req))])
        if opts.paging == "none":
            return rows, rows, False, None
        size = self._size(req)
        if opts.paging in {"offset", "page"}:
            name = opts.offset_param if opts.paging == "offset" else opts.page_param
            low = 0 if opts.paging == "offset" else opts.first_page
            number = _integer(req.first(name), name, low, default=low)
            start = number if opts.paging == "offset" else (number - opts.first_page) * size
            return rows, rows[start : start + size], len(rows) > start + size, None
        cursor = req.first(opts.cursor_param)
        window = rows if not cursor else ordering.after(rows, self._pivot(cursor))
        page = window[:size]
        token = _encode(ordering.key(page[-1])) if page else None
        return rows, page, len(window) > size, token

    def _pivot(self, cursor: str) -> SortKey:
        if self.options.paging == "cursor" and self.options.cursor == "last_key":
            row = self.core.store.get(cursor)
            if row is not None:
                return self._ordering.key(row)
            if cursor in self._gone:
                return self._gone[cursor]
            raise _BadParam(self.options.cursor_param, f"no order with key {cursor!r}")
        pivot = _decode(cursor)
        if pivot is None:
            raise _BadParam(self.options.cursor_param, "malformed cursor")
        return pivot

    def _size(self, req: Request) -> int:
        opts = self.options
        size = _integer(req.first(opts.size_param), opts.size_param, 1, default=opts.default_size)
        if size > opts.max_size:
            if opts.oversize == "reject":
                raise _BadParam(opts.size_param, f"{opts.size_param} must be at most {opts.max_size}")
            return opts.max_size
        return size

    def _filters(self, req: Request) -> list[Callable[[Row], bool]]:
        opts = self.options
        checks: list[Callable[[Row], bool]] = []
        if opts.state_param and (raw := req.first(opts.state_param)):
            states = {s.strip() for s in raw.split(",") if s.strip()}
            checks.append(lambda r: r.state in states)
        if opts.updated_since_param and (raw := req.first(opts.updated_since_param)) is not None:
            since = _since(raw, opts.updated_since_param, unix_seconds=opts.time_format == "unix")
            checks.append(lambda r: r.updated >= since)
        return checks

    def _authenticated(self, req: Request) -> bool:
        auth = self.options.auth
        if auth == "none":
            return True
        if self.revoked:
            return False
        if auth.startswith("query:"):
            sent = req.first(auth.removeprefix("query:")) or ""
        elif auth.startswith("header:"):
            sent = req.headers.get(auth.removeprefix("header:").lower(), "")
        else:
            scheme, _, value = req.headers.get("authorization", "").partition(" ")
            sent = value.strip() if scheme.lower() == auth else ""
            if auth == "basic" and sent:
                try:
                    sent = base64.b64decode(sent, validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    sent = ""
        return bool(sent) and hmac.compare_digest(sent.encode(), self.token.encode())

    def drift_out(self, req: Request) -> None:
        """Move the first order of a state-filtered listing out of the filter, or delete it when unfiltered."""
        try:
            rows = self._plan(req)[1]
        except _BadParam:
            return
        if not rows:
            return
        row, opts = rows[0], self.options
        raw = req.first(opts.state_param) if opts.state_param else None
        if raw:
            exits = [s for s in self.moves(row) if s not in raw.split(",")]
            if exits:
                self.move(row, exits[0])
        elif opts.deletable:
            self.remove(row)

    def _error(self, status: int, code: str, message: str, *, param: str | None = None) -> SimResponse:
        error: dict[str, Any] = {"code": code, "message": message}
        if param:
            error["param"] = param
        headers = []
        if status == 401 and self.options.auth in {"bearer", "basic"}:
            headers.append(("WWW-Authenticate", f'{self.options.auth.title()} realm="orders"'))
        return json_response(status, {"error": error}, headers)

    def unauthorized(self, req: Request) -> SimResponse:
        if self.revoked:
            return self._error(401, "token_revoked", "The token has been revoked.")
        return self._error(401, "unauthorized", "Missing or invalid credentials.")

    def rate_limited(self) -> SimResponse:
        return self._error(429, "rate_limited", "Too many requests.")

    def server_error(self, status: int) -> SimResponse:
        return self._error(status, "internal", "Internal server error.")

    def error_body(self) -> SimResponse:
        resp = self.server_error(500)
        resp.status = 200
        return resp

    def not_found(self, req: Request) -> SimResponse:
        return self._error(404, "not_found", "Not found.")


def _template(path: str) -> re.Pattern[str]:
    head, _, tail = path.partition("{key}")
    return re.compile(f"^{re.escape(head)}(?P<key>[^/]+){re.escape(tail)}$")


def _integer(raw: str | None, name: str, low: int, *, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?\d+", raw) or int(raw) < low:
        raise _BadParam(name, f"{name} must be an integer >= {low}")
    return int(raw)


def _since(raw: str, name: str, *, unix_seconds: bool) -> datetime:
    if unix_seconds and re.fullmatch(r"\d+", raw):
        return datetime.fromtimestamp(int(raw), tz=UTC)
    parsed = parse_iso(raw)
    if parsed is None:
        raise _BadParam(name, f"{name} must be an ISO 8601 date-time")
    return aware(parsed)


def _encode(key: SortKey) -> str:
    created, seq = key
    raw = orjson.dumps([created.isoformat(), seq])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> SortKey | None:
    try:
        created, seq = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return (datetime.fromisoformat(created), int(seq))
    except (binascii.Error, ValueError, TypeError):
        return None

"""Paddle Billing transactions: ``GET /transactions`` and ``/transactions/{id}``.

As Paddle's API reference has it: a Bearer API key (no header, a malformed one and a wrong or revoked key are
Paddle's 403s ``authentication_missing``, ``authentication_malformed``, ``invalid_token``); ``{"data": [...],
"meta": {"request_id", "pagination": {"per_page", "next", "has_more", "estimated_total"}}}`` where ``next`` is a
full URL repeating the request's query with ``after`` set to the last id (present even on the last page: stop on
``has_more``); ``per_page`` above the maximum returns the maximum (``meta.pagination.per_page`` says so);
``order_by=field[ASC|DESC]`` over ``billed_at``, ``created_at``, ``id``, ``updated_at``; comma lists for
``status``, ``id``, ``customer_id``, ...; ``created_at``, ``updated_at``, ``billed_at`` exact or with ``[LT]``,
``[LTE]``, ``[GT]``, ``[GTE]``; timestamps in RFC 3339 with Go's trimmed fraction (``...08.3Z``); ids are
(monotonic) ULIDs, so ``id`` order is creation order; errors ``{"error": {"type", "code", "detail",
"documentation_url"}, "meta": {"request_id"}}``; ``Skip-Count: true`` makes ``estimated_total`` -1.

Switchable (``PaddleOptions``): page size default and maximum (30 for transactions), the default order.
Simplified: a bad parameter is one ``bad_request`` listing the fields; of ``include`` only ``customer`` adds
anything; an ``after`` id that does not exist is a 400 unless the order is by id (then it is compared as an id)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from orderwatch.simulator.shops.dialect import Dialect, Request, json_response
from orderwatch.simulator.shops.ids import MonotonicUlids, ulid, uuid4
from orderwatch.simulator.shops.keyset import Ordering, SortKey
from orderwatch.simulator.shops.links import build_url, with_params
from orderwatch.simulator.shops.people import person
from orderwatch.simulator.shops.store import Row
from orderwatch.simulator.shops.timefmt import aware, parse_iso, rfc3339_nano
from orderwatch.simulator.wire import SimResponse

PADDLE_TRANSITIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "draft": ("ready", "canceled"),
    "ready": ("billed", "paid", "canceled"),
    "billed": ("paid", "past_due", "canceled"),
    "past_due": ("paid", "canceled"),
    "paid": ("completed",),
    "completed": (),
    "canceled": (),
}
LIST_PATH: Final = "/transactions"
_DETAIL: Final = re.compile(r"^/transactions/(?P<id>[^/]+)$")
_ORDER_BY: Final = re.compile(r"^(?P<field>billed_at|created_at|id|updated_at)\[(?P<dir>asc|desc)\]$", re.IGNORECASE)
_OPS: Final[Mapping[str, Callable[[datetime, datetime], bool]]] = {
    "": lambda a, b: a == b,
    "[LT]": lambda a, b: a < b,
    "[LTE]": lambda a, b: a <= b,
    "[GT]": lambda a, b: a > b,
    "[GTE]": lambda a, b: a >= b,
}
_LISTS: Final = {"id": "id", "customer_id": "customer_id", "subscription_id": "subscription_id"}
_PRICES: Final = (("Starter (monthly)", 1200), ("Pro (monthly)", 4900), ("Pro (annual)", 49000), ("Seat add-on", 900))
_BILLED: Final = frozenset({"billed", "paid", "completed", "past_due"})
_DOCS: Final = "https://developer.paddle.com/errors/shared/"


@dataclass(frozen=True, slots=True)
class PaddleOptions:
    """Where Paddle setups differ: page size default and maximum, and the order when ``order_by`` is absent."""

    default_per_page: int = 30
    max_per_page: int = 30
    default_order_by: str = "id[DESC]"
    currency: str = "USD"


class PaddleDialect(Dialect):
    """Paddle transactions (see the module docstring for what is checked and what is simplified)."""

    api = "paddle-transactions"
    prefixes = ("/transactions",)
    whole_seconds = False
    default_token = "pdl_sdbx_apikey_01jsimorderwatch0000000000_Zx9YwV8uT7sR6qP5oN4mL3_kJ2"
    transitions = PADDLE_TRANSITIONS
    births = (("draft", 0.25), ("ready", 0.45), ("billed", 0.3))
    initial = "draft"

    def __init__(self, options: PaddleOptions, **kw: Any) -> None:
        super().__init__(**kw)
        self.options = options
        rng = self.core.rng
        joined = rfc3339_nano(self.core.now() - timedelta(days=30))
        self._customers: dict[str, dict[str, Any]] = {}
        for _ in range(5):
            who, cid = person(rng), f"ctm_{ulid(self.core.now(), rng)}"
            self._customers[cid] = {
                "id": cid,
                "name": f"{who.first} {who.last}",
                "email": who.email,
                "marketing_consent": False,
                "status": "active",
                "custom_data": None,
                "locale": "en",
                "created_at": joined,
                "updated_at": joined,
                "import_meta": None,
            }
        self._invoices = 10000 + rng.randrange(1000)
        self._ids = MonotonicUlids(rng)

    @property
    def list_path(self) -> str:
        return LIST_PATH

    # Orders ------------------------------------------------------------------------------------------------
    def build(self, state: str) -> Row:
        core, rng = self.core, self.core.rng
        created = core.creation_time()
        tid = f"txn_{self._ids.next(created)}"
        name, unit = rng.choice(_PRICES)
        qty = rng.randint(1, 3)
        subtotal = unit * qty
        tax = subtotal * 19 // 100
        manual = state == "billed" or rng.random() < 0.2
        recurring = not manual and rng.random() < 0.5
        money = {
            "subtotal": str(subtotal),
            "tax": str(tax),
            "discount": "0",
            "total": str(subtotal + tax),
            "grand_total": str(subtotal + tax),
            "fee": None,
            "earnings": None,
            "currency_code": self.options.currency,
        }
        body: dict[str, Any] = {
            "id": tid,
            "status": state,
            "customer_id": rng.choice(list(self._customers)),
            "address_id": f"add_{ulid(created, rng)}",
            "business_id": None,
            "custom_data": None,
            "origin": "api" if manual else ("subscription_recurring" if recurring else "web"),
            "collection_mode": "manual" if manual else "automatic",
            "subscription_id": f"sub_{ulid(created, rng)}" if recurring else None,
            "invoice_id": None,
            "invoice_number": None,
            "billing_details": {"enable_checkout": False, "payment_terms": {"interval": "day", "frequency": 14}}
            if manual
            else None,
            "billing_period": None,
            "currency_code": self.options.currency,
            "discount_id": None,
            "created_at": rfc3339_nano(created),
            "updated_at": rfc3339_nano(created),
            "billed_at": None,
            "revised_at": None,
            "items": [{"price": {"id": f"pri_{ulid(created, rng)}", "description": name}, "quantity": qty}],
            "details": {"totals": money, "line_items": []},
            "payments": [],
            "checkout": None if manual else {"url": f"https://pay.example.com/checkout?_ptxn={tid}"},
        }
        row = Row(tid, core.store.next_seq(), state, created, created, body)
        self._apply(row)
        return row

    def on_state(self, row: Row, before: str) -> None:
        self._apply(row)

    def on_touch(self, row: Row) -> None:
        row.body["updated_at"] = rfc3339_nano(row.updated)

    def _apply(self, row: Row) -> None:
        body, status = row.body, row.state
        body["status"] = status
        body["updated_at"] = rfc3339_nano(row.updated)
        if status in _BILLED and body["billed_at"] is None:
            body["billed_at"] = rfc3339_nano(row.updated)
            row.extra["billed"] = row.updated
            self._invoices += 1
            body["invoice_id"] = f"inv_{ulid(row.updated, self.core.rng)}"
            body["invoice_number"] = f"325-{self._invoices}"
        if status in {"paid", "completed"} and not body["payments"]:
            body["payments"] = [self._payment(row, "captured")]
        elif status == "past_due" and not body["payments"]:
            body["payments"] = [self._payment(row, "error")]

    def _payment(self, row: Row, status: str) -> dict[str, Any]:
        when = rfc3339_nano(row.updated)
        return {
            "payment_attempt_id": uuid4(self.core.rng),
            "amount": row.body["details"]["totals"]["grand_total"],
            "status": status,
            "error_code": "declined" if status == "error" else None,
            "method_details": {"type": "card", "card": {"type": "visa", "last4": "4242"}},
            "created_at": when,
            "captured_at": when if status == "captured" else None,
        }

    # HTTP --------------------------------------------------------------------------------------------------
    def gate(self, req: Request) -> SimResponse | None:
        if req.path != LIST_PATH and not _DETAIL.match(req.path):
            return self.not_found(req)
        header = req.headers.get("authorization")
        if header is None:
            return self._error(403, "authentication_missing", "Authentication header missing.")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return self._error(
                403, "authentication_malformed", "Authentication header included, but incorrectly formatted."
            )
        if self.revoked or key.strip() != self.token:
            return self.unauthorized(req)
        if req.path != LIST_PATH:
            return None
        bad = self._invalid_fields(req)
        if bad:
            return self._error(400, "bad_request", "Invalid request.", errors=bad)
        return None

    def _invalid_fields(self, req: Request) -> list[dict[str, str]]:
        bad: list[dict[str, str]] = []
        per_page = req.first("per_page")
        if per_page is not None and not (per_page.isdigit() and int(per_page) > 0):
            bad.append({"field": "per_page", "message": "per_page must be a positive integer"})
        order_by = req.first("order_by")
        if order_by is not None and not _ORDER_BY.match(order_by):
            bad.append(
                {"field": "order_by", "message": "order_by must be one of billed_at, created_at, id, updated_at"}
            )
        for status in _split(req.first("status")):
            if status not in PADDLE_TRANSITIONS:
                bad.append({"field": "status", "message": f"{status} is not a valid transaction status"})
        for name in ("created_at", "updated_at", "billed_at"):
            for op in _OPS:
                raw = req.first(name + op)
                if raw is not None and parse_iso(raw) is None:
                    bad.append({"field": name + op, "message": f"{name + op} must be an RFC 3339 datetime"})
        after = req.first("after")
        if after and after not in self.core.store and self._order(req)[0] != "id":
            bad.append({"field": "after", "message": f"{after} does not exist"})
        return bad

    def answer(self, req: Request) -> SimResponse:
        request_id = uuid4(self.core.aux)
        match = _DETAIL.match(req.path)
        if match is not None:
            row = self.core.store.get(match["id"])
            if row is None:
                return self._error(404, "not_found", f"Entity {match['id']} not found")
            data = self._included(self.render(row, req.base_url), req)
            return json_response(200, {"data": data, "meta": {"request_id": request_id}})
        raw = req.first("per_page")
        per_page = min(int(raw) if raw else self.options.default_per_page, self.options.max_per_page)
        rows = [r for r in self.core.store.rows() if all(check(r) for check in self._filters(req))]
        field, descending = self._order(req)
        ordering = Ordering(_sort_key(field), descending)
        after = req.first("after")
        if after:
            known = self.core.store.get(after)
            pivot: SortKey = ordering.key(known) if known is not None else (after,)
            window = ordering.after(rows, pivot)
        else:
            window = ordering.apply(rows)
        page = window[:per_page]
        cursor = page[-1].key if page else after
        estimated = -1 if req.headers.get("skip-count", "").lower() == "true" else min(len(rows), 100001)
        pagination = {
            "per_page": per_page,
            "next": build_url(req.base_url, LIST_PATH, with_params(req.pairs, {"after": cursor})),
            "has_more": len(window) > per_page,
            "estimated_total": estimated,
        }
        body = {
            "data": [self._included(self.render(r, req.base_url), req) for r in page],
            "meta": {"request_id": request_id, "pagination": pagination},
        }
        return json_response(200, body)

    def _included(self, body: dict[str, Any], req: Request) -> dict[str, Any]:
        """``body`` with the related entities ``include`` asks for (only ``customer`` is modelled)."""
        if "customer" in _split(req.first("include")):
            body["customer"] = dict(self._customers[body["customer_id"]])
        return body

    def _order(self, req: Request) -> tuple[str, bool]:
        match = _ORDER_BY.match(req.first("order_by") or self.options.default_order_by)
        if match is None:
            return "id", True
        return match["field"], match["dir"].lower() == "desc"

    def _filters(self, req: Request) -> list[Callable[[Row], bool]]:
        checks: list[Callable[[Row], bool]] = []
        statuses = set(_split(req.first("status")))
        if statuses:
            checks.append(lambda r: r.state in statuses)
        for param, name in _LISTS.items():
            wanted = set(_split(req.first(param)))
            if wanted:
                checks.append(_one_of(name, wanted))
        for param in ("collection_mode", "origin", "invoice_number"):
            value = req.first(param)
            if value:
                checks.append(_one_of(param, set(_split(value))))
        for name, attr in (("created_at", "created"), ("updated_at", "updated"), ("billed_at", "billed")):
            for op, compare in _OPS.items():
                parsed = parse_iso(req.first(name + op) or "")
                if parsed is not None:
                    checks.append(_time_check(attr, aware(parsed), compare))
        return checks

    def drift_out(self, req: Request) -> None:
        """Move the first order of a ``status``-filtered listing to a state outside the filter."""
        statuses = set(_split(req.first("status")))
        if not statuses:
            return
        field, descending = self._order(req)
        rows = Ordering(_sort_key(field), descending).apply([r for r in self.core.store.rows() if r.state in statuses])
        for row in rows:
            exits = [s for s in self.moves(row) if s not in statuses]
            if exits:
                self.move(row, exits[0])
                return

    def _error(self, status: int, code: str, detail: str, *, errors: list[dict[str, str]] | None = None) -> SimResponse:
        error: dict[str, Any] = {
            "type": "api_error" if status >= 500 else "request_error",
            "code": code,
            "detail": detail,
            "documentation_url": _DOCS + code,
        }
        if errors:
            error["errors"] = errors
        return json_response(status, {"error": error, "meta": {"request_id": uuid4(self.core.aux)}})

    def unauthorized(self, req: Request) -> SimResponse:
        return self._error(403, "invalid_token", "Invalid or revoked API key.")

    def rate_limited(self) -> SimResponse:
        detail = (
            "IP address exceeded the allowed rate limit. Retry after the number of seconds in the Retry-After header."
        )
        resp = self._error(429, "too_many_requests", detail)
        resp.headers.append(("Retry-After", "1"))
        return resp

    def server_error(self, status: int) -> SimResponse:
        return self._error(status, "internal_error", "An internal error has occurred. Please try again later.")

    def error_body(self) -> SimResponse:
        resp = self.server_error(500)
        resp.status = 200
        return resp

    def not_found(self, req: Request) -> SimResponse:
        return self._error(404, "not_found", "Requested route not found")


def _split(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def _one_of(name: str, wanted: set[str]) -> Callable[[Row], bool]:
    """Rows whose field ``name`` is one of ``wanted`` (``null`` matches a missing link)."""
    nulls = "null" in wanted
    return lambda r: r.body[name] in wanted or (nulls and r.body[name] is None)


def _sort_key(field: str) -> Callable[[Row], SortKey]:
    if field == "id":
        return lambda r: (r.key,)
    if field == "billed_at":  # nulls last going up, first going down (PostgreSQL's default)
        return lambda r: (r.extra.get("billed") is None, r.extra.get("billed") or r.created, r.key)
    attr = "created" if field == "created_at" else "updated"
    return lambda r: (getattr(r, attr), r.key)


def _time_check(attr: str, at: datetime, compare: Callable[[datetime, datetime], bool]) -> Callable[[Row], bool]:
    if attr == "billed":
        return lambda r: r.extra.get("billed") is not None and compare(r.extra["billed"], at)
    return lambda r: compare(getattr(r, attr), at)

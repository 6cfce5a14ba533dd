"""Shopify REST Admin API orders: ``GET /admin/api/{version}/orders.json``, ``orders/{id}.json``, ``count.json``.

As Shopify documents it: ``X-Shopify-Access-Token`` (a wrong or revoked token is the 401 ``{"errors": "[API]
Invalid API key or access token ..."}``); ``status`` defaults to ``open`` (``any`` lists every order);
``financial_status``, ``fulfillment_status``, ``ids``, ``since_id`` and the ``*_at_min``/``*_at_max`` filters;
``limit`` 1-250 (default 50); body ``{"orders": [...]}``; cursor paging only through the ``Link`` header
(``rel="previous"``/``rel="next"``) whose ``page_info`` carries the filters, so beside it only ``limit`` and
``fields`` are allowed (anything else is a 400 ``{"errors": {name: "name cannot be passed when page_info is
present. ..."}}``); ``X-Shopify-API-Version`` says which version answered (an unsupported old one falls forward
to the oldest supported).

Switchable (``ShopifyOptions``): the supported version window (versions before 2019-07 page with ``page`` and send
no ``Link``), the 60-day window of shops without ``read_all_orders``, the shop's time zone.

Simplified: ``limit`` out of range is clamped, unparseable dates and unknown filter values are ignored or match
nothing, ``order`` accepts ``created_at|updated_at|processed_at|id asc|desc`` (default ``created_at desc``;
``since_id`` alone sorts by id), and ``page_info`` is base64 JSON, not Shopify's opaque token."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from orderwatch.simulator.shops.dialect import Dialect, Request, json_response
from orderwatch.simulator.shops.ids import uuid4
from orderwatch.simulator.shops.keyset import Ordering
from orderwatch.simulator.shops.links import build_url, link_header
from orderwatch.simulator.shops.shopify_orders import new_order
from orderwatch.simulator.shops.store import Row
from orderwatch.simulator.shops.timefmt import aware, parse_iso, with_offset
from orderwatch.simulator.wire import SimResponse

SHOPIFY_TRANSITIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "pending": ("authorized", "paid", "partially_paid", "voided"),
    "authorized": ("paid", "partially_paid", "voided"),
    "partially_paid": ("paid", "partially_refunded", "refunded"),
    "paid": ("partially_refunded", "refunded"),
    "partially_refunded": ("refunded",),
    "refunded": (),
    "voided": (),
}
_ROUTE: Final = re.compile(r"^/admin/api/(?P<version>[^/]+)/orders(?:/(?P<id>[^/]+?))?\.json$")
_VERSION: Final = re.compile(r"^\d{4}-(01|04|07|10)$")
_PAGE_INFO_ONLY: Final = frozenset({"page_info", "limit", "fields"})
_UNPAID: Final = frozenset({"authorized", "partially_paid"})
_FULFILLMENT: Final[Mapping[str, Callable[[str | None], bool]]] = {
    "any": lambda f: True,
    "shipped": lambda f: f == "fulfilled",
    "partial": lambda f: f == "partial",
    "unshipped": lambda f: f is None,
    "unfulfilled": lambda f: f in {None, "partial"},
}
_ORDER_FIELDS: Final = {"created_at": "created", "updated_at": "updated", "processed_at": "created", "id": "id"}
_PAGINATION_DOC: Final = "See https://shopify.dev/api/usage/pagination-rest for more information."
_INVALID_TOKEN: Final = "[API] Invalid API key or access token (unrecognized login or wrong password)"
_CHALLENGE: Final = (
    b'<!DOCTYPE html><html lang="en"><head><title>Your connection needs to be verified</title></head><body>'
    b"<h1>Your connection needs to be verified</h1><p>Please confirm that you are a human.</p></body></html>"
)


@dataclass(frozen=True, slots=True)
class ShopifyOptions:
    """Where Shopify shops and API versions differ.

    ``oldest_version``/``newest_version``: the supported window (older requests fall forward to the oldest;
    newer ones are 404; ``unstable`` is always served); before 2019-07 the API paged with ``page`` and sent no
    ``Link``. ``read_all_orders=False``: like an app without that scope, only the last 60 days are visible.
    ``utc_offset_hours``: the shop's time zone, which every timestamp carries."""

    shop: str = "orderwatch-sim"
    oldest_version: str = "2024-10"
    newest_version: str = "2025-07"
    read_all_orders: bool = True
    utc_offset_hours: float = -4.0
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class _Query:
    """What a list request asks for: filters and order (carried inside ``page_info`` across pages)."""

    filters: dict[str, str]
    order: str


class ShopifyDialect(Dialect):
    """Shopify orders (see the module docstring for what is checked and what is simplified)."""

    api = "shopify"
    prefixes = ("/admin/api/",)
    default_token = "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"
    transitions = SHOPIFY_TRANSITIONS
    births = (("paid", 0.6), ("pending", 0.25), ("authorized", 0.15))
    initial = "pending"
    delete_share = 0.03

    def __init__(self, options: ShopifyOptions, **kw: Any) -> None:
        super().__init__(**kw)
        self.options = options
        self._offset = timedelta(hours=options.utc_offset_hours)
        self._next_id = 5_600_000_000_000 + self.core.rng.randrange(10**9)
        self._number = 1000
        self.actions = {"fulfil": self._fulfil, "close": self._close, "open": self._reopen}

    @property
    def list_path(self) -> str:
        return f"/admin/api/{self.options.newest_version}/orders.json"

    def auth_headers(self) -> dict[str, str]:
        return {"x-shopify-access-token": self.token}

    # Orders ------------------------------------------------------------------------------------------------
    def build(self, state: str) -> Row:
        core, rng = self.core, self.core.rng
        created = core.creation_time()
        self._next_id += rng.randint(10**5, 10**7)
        self._number += 1
        oid = self._next_id
        body = new_order(oid, self._number, state, rng, self.options.shop, self.options.currency)
        row = Row(str(oid), core.store.next_seq(), state, created, created, body, {"id": oid})
        body["created_at"] = body["processed_at"] = self._time(created)
        self._apply(row)
        return row

    def on_state(self, row: Row, before: str) -> None:
        self._apply(row)

    def on_touch(self, row: Row) -> None:
        row.body["updated_at"] = self._time(row.updated)

    def _apply(self, row: Row) -> None:
        body, status = row.body, row.state
        body["financial_status"] = status
        body["updated_at"] = self._time(row.updated)
        paid = status in {"paid", "partially_refunded", "refunded"}
        body["total_outstanding"] = "0.00" if paid else body["total_price"]
        if status == "voided" and body["cancelled_at"] is None:
            body["cancelled_at"] = body["closed_at"] = self._time(row.updated)
            body["cancel_reason"] = "customer"
            row.extra["cancelled"] = row.extra["closed"] = True
        if status in {"refunded", "partially_refunded"}:
            amount = body["total_price"] if status == "refunded" else f"{float(body['total_price']) / 2:.2f}"
            body["refunds"] = [{"id": row.extra["id"] + 7, "note": None, "transactions": [{"amount": amount}]}]
            body["current_total_price"] = f"{float(body['total_price']) - float(amount):.2f}"

    def _time(self, at: datetime) -> str:
        return with_offset(at, self._offset)

    def why_undeletable(self, row: Row) -> str | None:
        if row.extra.get("cancelled") or row.extra.get("closed"):
            return None
        return f"shopify order {row.key} is open: only cancelled or archived orders can be deleted"

    def delete_candidates(self) -> list[str]:
        return self.core.store.keys_in("voided")

    def side_change(self) -> bool:
        """Fulfil a paid order, or archive (close) a fulfilled one."""
        rng, store = self.core.rng, self.core.store
        paid = [store.get(k) for k in store.keys_in("paid")]
        todo = [r for r in paid if r is not None and not r.extra.get("closed")]
        if not todo:
            return False
        row = rng.choice(todo)
        (self._close if row.body["fulfillment_status"] == "fulfilled" else self._fulfil)(row)
        return True

    def _fulfil(self, row: Row) -> None:
        self.touch(row)
        row.body["fulfillment_status"] = "fulfilled"
        fulfillment = {"id": row.extra["id"] + 3, "status": "success", "created_at": self._time(row.updated)}
        row.body["fulfillments"] = [fulfillment]

    def _close(self, row: Row) -> None:
        self.touch(row)
        row.body["closed_at"] = self._time(row.updated)
        row.extra["closed"] = True

    def _reopen(self, row: Row) -> None:
        if row.extra.get("cancelled"):
            raise ValueError(f"shopify order {row.key} is cancelled and cannot be reopened")
        self.touch(row)
        row.body["closed_at"] = None
        row.extra["closed"] = False

    # HTTP --------------------------------------------------------------------------------------------------
    def served_version(self, requested: str) -> str | None:
        """The version that answers a request for ``requested``, or None when there is no such version."""
        if requested == "unstable":
            return requested
        if not _VERSION.match(requested) or requested > self.options.newest_version:
            return None
        return max(requested, self.options.oldest_version)

    def gate(self, req: Request) -> SimResponse | None:
        route = _ROUTE.match(req.path)
        if route is None or self.served_version(route["version"]) is None:
            return self.not_found(req)
        if not self._authenticated(req):
            return self.unauthorized(req)
        if route["id"] is None and "page_info" in req.params and not self._legacy(route["version"]):
            extra = [name for name in req.params if name not in _PAGE_INFO_ONLY]
            if extra:
                msgs = {name: f"{name} cannot be passed when page_info is present. {_PAGINATION_DOC}" for name in extra}
                return self._error(400, msgs)
            if _decode(req.first("page_info") or "") is None:
                return self._error(400, {"page_info": "Invalid value."})
        return None

    def answer(self, req: Request) -> SimResponse:
        route = _ROUTE.match(req.path)
        assert route is not None  # gate checked it
        version = route["version"]
        if route["id"] == "count":
            return self._json(200, {"count": len(self._select(self._query(req.params)))})
        if route["id"] is not None:
            row = self.core.store.get(route["id"]) if route["id"].isdigit() else None
            return self._json(200, {"order": self.render(row, "")}) if row else self.not_found(req)
        limit = _limit(req.first("limit"))
        fields = [f for f in (req.first("fields") or "").split(",") if f.strip()]
        if self._legacy(version):
            raw = req.first("page") or "1"
            number = int(raw) if raw.isdigit() and int(raw) > 0 else 1
            rows = self._select(self._query(req.params))[(number - 1) * limit : number * limit]
            return self._json(200, {"orders": [self._show(r, fields) for r in rows]})
        token = _decode(req.first("page_info") or "") if "page_info" in req.params else None
        query = _Query(dict(token["f"]), str(token["o"])) if token else self._query(req.params)
        ordering, rows = self._ordering(query.order), self._select(query)
        if token is None:
            page = rows[:limit]
        elif token["d"] == "next":
            page = ordering.after(rows, _pivot(token))[:limit]
        else:
            page = ordering.before(rows, _pivot(token))[-limit:]
        links = []
        if page:
            first, last = ordering.key(page[0]), ordering.key(page[-1])
            if token is not None and ordering.before(rows, first):
                links.append((self._link(req, version, limit, fields, query, "prev", first), "previous"))
            if ordering.after(rows, last):
                links.append((self._link(req, version, limit, fields, query, "next", last), "next"))
        headers = [("Link", link_header(links))] if links else []
        return self._json(200, {"orders": [self._show(r, fields) for r in page]}, headers)

    def _legacy(self, requested: str) -> bool:
        served = self.served_version(requested)
        return served is not None and served != "unstable" and served < "2019-07"

    def _query(self, params: Mapping[str, list[str]]) -> _Query:
        filters = {name: values[0] for name, values in params.items() if values and name not in _PAGE_INFO_ONLY}
        filters.pop("page", None)
        order = filters.pop("order", "")
        if not order:
            order = "id asc" if "since_id" in filters else "created_at desc"
        return _Query(filters, order)

    def _ordering(self, order: str) -> Ordering:
        name, _, direction = order.strip().partition(" ")
        attr = _ORDER_FIELDS.get(name, "created")
        descending = direction.strip().lower() != "asc"
        if attr == "id":
            return Ordering(lambda r: (r.extra["id"],), descending)
        return Ordering(lambda r: (getattr(r, attr).timestamp(), r.extra["id"]), descending)

    def _select(self, query: _Query) -> list[Row]:
        """The orders the query's filters select, in the query's order."""
        f = query.filters
        checks: list[Callable[[Row], bool]] = []
        status = f.get("status", "open")
        if status == "open":
            checks.append(lambda r: not r.extra.get("closed") and not r.extra.get("cancelled"))
        elif status == "closed":
            checks.append(lambda r: bool(r.extra.get("closed")))
        elif status == "cancelled":
            checks.append(lambda r: bool(r.extra.get("cancelled")))
        elif status != "any":
            checks.append(lambda r: False)
        financial = f.get("financial_status", "any")
        if financial == "unpaid":
            checks.append(lambda r: r.state in _UNPAID)
        elif financial != "any":
            checks.append(lambda r: r.state == financial)
        fulfilled = _FULFILLMENT.get(f.get("fulfillment_status", "any"), _nothing)
        checks.append(lambda r: fulfilled(r.body["fulfillment_status"]))
        if "ids" in f:
            ids = {int(i) for i in f["ids"].split(",") if i.strip().isdigit()}
            checks.append(lambda r: r.extra["id"] in ids)
        if f.get("since_id", "").isdigit():
            since = int(f["since_id"])
            checks.append(lambda r: r.extra["id"] > since)
        for prefix, attr in (("created_at", "created"), ("updated_at", "updated"), ("processed_at", "created")):
            for bound, at_least in (("min", True), ("max", False)):
                parsed = parse_iso(f.get(f"{prefix}_{bound}", ""))
                if parsed is not None:
                    checks.append(_bound(attr, aware(parsed, self._offset), at_least=at_least))
        if not self.options.read_all_orders:
            checks.append(_bound("created", self.core.now() - timedelta(days=60), at_least=True))
        rows = [r for r in self.core.store.rows() if all(check(r) for check in checks)]
        return self._ordering(query.order).apply(rows)

    def _link(
        self, req: Request, version: str, limit: int, fields: list[str], query: _Query, way: str, pivot: tuple[Any, ...]
    ) -> str:
        token = {"d": way, "k": list(pivot), "f": sorted(query.filters.items()), "o": query.order}
        info = base64.urlsafe_b64encode(orjson.dumps(token)).decode().rstrip("=")
        pairs = [("limit", str(limit)), *([("fields", ",".join(fields))] if fields else []), ("page_info", info)]
        return build_url(req.base_url, f"/admin/api/{version}/orders.json", pairs)

    def _show(self, row: Row, fields: list[str]) -> dict[str, Any]:
        body = self.render(row, "")
        return {k: v for k, v in body.items() if k in fields} if fields else body

    def _authenticated(self, req: Request) -> bool:
        sent = req.headers.get("x-shopify-access-token", "")
        if not sent:
            scheme, _, value = req.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "basic":  # legacy private apps: API key as user, the password as token
                try:
                    sent = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
                except (binascii.Error, UnicodeDecodeError):
                    sent = ""
        return bool(sent) and not self.revoked and hmac.compare_digest(sent.encode(), self.token.encode())

    def drift_out(self, req: Request) -> None:
        """Archive the first order of an ``open`` listing (with a cursor, later pages are unaffected anyway)."""
        if "page_info" in req.params:
            return
        rows = self._select(self._query(req.params))
        if rows and not rows[0].extra.get("closed"):
            self._close(rows[0])

    def _json(self, status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> SimResponse:
        return json_response(status, body, headers, content_type="application/json; charset=utf-8")

    def _error(self, status: int, errors: Any) -> SimResponse:
        return self._json(status, {"errors": errors})

    def unauthorized(self, req: Request) -> SimResponse:
        return self._error(401, _INVALID_TOKEN)

    def rate_limited(self) -> SimResponse:
        msg = "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
        return self._json(429, {"errors": msg}, [("Retry-After", "1.0")])

    def server_error(self, status: int) -> SimResponse:
        text = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Unavailable Shop"}[status]
        return self._error(status, text)

    def error_body(self) -> SimResponse:
        return SimResponse(200, _CHALLENGE, "text/html; charset=utf-8")

    def not_found(self, req: Request) -> SimResponse:
        return self._error(404, "Not Found")

    def decorate(self, resp: SimResponse, req: Request) -> SimResponse:
        route = _ROUTE.match(req.path)
        served = self.served_version(route["version"]) if route else None
        if served:
            resp.headers.append(("X-Shopify-API-Version", served))
        resp.headers += [("X-Shopify-Shop-Api-Call-Limit", "1/40"), ("X-Request-Id", uuid4(self.core.aux))]
        return resp


def _nothing(fulfillment: str | None) -> bool:
    """An unknown ``fulfillment_status`` matches no order."""
    del fulfillment
    return False


def _limit(raw: str | None) -> int:
    try:
        return min(250, max(1, int(raw))) if raw else 50
    except ValueError:
        return 50


def _bound(attr: str, at: datetime, *, at_least: bool) -> Callable[[Row], bool]:
    if at_least:
        return lambda r: bool(getattr(r, attr) >= at)
    return lambda r: bool(getattr(r, attr) <= at)


def _decode(info: str) -> dict[str, Any] | None:
    """The content of a ``page_info`` this simulator wrote, or None when it is not one."""
    try:
        token = orjson.loads(base64.urlsafe_b64decode(info + "=" * (-len(info) % 4)))
    except (binascii.Error, ValueError):
        return None
    ok = isinstance(token, dict) and token.get("d") in {"next", "prev"} and isinstance(token.get("k"), list)
    return token if ok and isinstance(token.get("f"), list) and isinstance(token.get("o"), str) else None


def _pivot(token: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(token["k"])

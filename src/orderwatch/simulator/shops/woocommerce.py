"""WooCommerce REST API v3 orders: ``GET /wp-json/wc/v3/orders`` and ``/wp-json/wc/v3/orders/{id}``.

As WooCommerce 9 answers (checked against its REST controllers): consumer key and secret by HTTP Basic or the
``consumer_key``/``consumer_secret`` query parameters (an unknown or revoked key is no user at all, so the answer
is ``woocommerce_rest_cannot_view``; a wrong secret is ``Consumer secret is invalid.``); WordPress's argument
validation (``per_page`` 1-100, ``status`` a list of known statuses, ISO 8601 dates) with every bad argument in
one ``rest_invalid_param`` 400; a bare JSON array with ``X-WP-Total``, ``X-WP-TotalPages`` and an RFC 8288
``Link`` (``rel="prev"``, ``rel="next"``) that repeats the request's query with ``page`` replaced; ``status=any``
(the default) meaning every status but ``trash``; ``orderby=date`` breaking ties by id; a page past the end is an
empty array, not an error.

Simplified: Basic auth is accepted over plain HTTP (the real site needs HTTPS or OAuth 1.0a); ``dp``, ``context``
and ``product`` are validated but do not change the body; a date with an offset is compared in the column's own
clock (WordPress converts it to the site's local time even for the GMT columns)."""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from orderwatch.simulator.shops.dialect import Dialect, Request
from orderwatch.simulator.shops.links import build_url, link_header, with_params
from orderwatch.simulator.shops.store import Row
from orderwatch.simulator.shops.timefmt import aware, local_naive, parse_iso
from orderwatch.simulator.shops.woo_orders import new_order
from orderwatch.simulator.shops.wp_rest import WP_JSON, Arg, validate, wp_error
from orderwatch.simulator.wire import SimResponse

WOO_STATUSES: Final = (
    "pending",
    "processing",
    "on-hold",
    "completed",
    "cancelled",
    "refunded",
    "failed",
    "checkout-draft",
)
# What WooCommerce and its gateways do on their own; an admin may set any status (``move(..., force=True)``).
WOO_TRANSITIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "checkout-draft": ("pending", "processing", "on-hold", "failed", "trash"),
    "pending": ("processing", "on-hold", "failed", "cancelled", "trash"),
    "on-hold": ("processing", "cancelled", "failed", "trash"),
    "processing": ("completed", "on-hold", "cancelled", "refunded", "trash"),
    "completed": ("refunded", "trash"),
    "failed": ("pending", "processing", "cancelled", "trash"),
    "cancelled": ("trash",),
    "refunded": ("trash",),
    "trash": (),  # untrash restores the status the order had (``moves`` offers it)
}
LIST_PATH: Final = "/wp-json/wc/v3/orders"
_ROUTE: Final = re.compile(r"^/wp-json/wc/v3/orders(?:/(?P<id>\d+))?/?$")
_ONLINE: Final = frozenset({"stripe", "ppcp-gateway"})
_PAID: Final = frozenset({"processing", "completed", "refunded"})
_EDITABLE: Final = frozenset({"pending", "on-hold", "auto-draft", "checkout-draft"})
_CRITICAL: Final = (
    '<p>There has been a critical error on this website.</p><p><a href="https://wordpress.org/documentation/'
    'article/faq-troubleshooting/">Learn more about troubleshooting WordPress.</a></p>'
)
_NOTICE: Final = (
    b"<br />\n<b>Deprecated</b>:  Creation of dynamic property WC_Order_Item_Product::$legacy_values is deprecated"
    b" in <b>/var/www/html/wp-content/plugins/woocommerce/includes/legacy/abstract-wc-legacy-order.php</b> on line"
    b" <b>21</b><br />\n"
)
_BASIC_REALM: Final = (
    'Basic realm="WooCommerce API. Use a consumer key in the username field and a consumer secret in the password'
    ' field."'
)


@dataclass(frozen=True, slots=True)
class WooOptions:
    """Where WooCommerce sites differ: ``max_per_page`` (a plugin may raise WordPress's 100), ``honor_orderby``
    (False: a plugin pins the order to ``date DESC`` whatever ``orderby``/``order`` say), the site's UTC offset
    (``date_created`` and friends are its wall-clock time; the ``*_gmt`` fields are UTC), and the currency."""

    max_per_page: int = 100
    honor_orderby: bool = True
    utc_offset_hours: float = 0.0
    currency: str = "EUR"


def _list_args(max_per_page: int) -> tuple[Arg, ...]:
    """WooCommerce's registered collection arguments for orders, in registration order."""
    return (
        Arg("context", "enum", "view", choices=("view", "edit")),
        Arg("page", "integer", 1, minimum=1),
        Arg("per_page", "integer", 10, minimum=1, maximum=max_per_page),
        Arg("search", "string"),
        Arg("after", "date-time"),
        Arg("before", "date-time"),
        Arg("modified_after", "date-time"),
        Arg("modified_before", "date-time"),
        Arg("dates_are_gmt", "boolean", False),
        Arg("exclude", "integer-list", ()),
        Arg("include", "integer-list", ()),
        Arg("offset", "integer"),
        Arg("order", "enum", "desc", choices=("asc", "desc")),
        Arg("orderby", "enum", "date", choices=("date", "id", "include", "title", "slug", "modified")),
        Arg("parent", "integer-list", ()),
        Arg("parent_exclude", "integer-list", ()),
        Arg("status", "enum-list", ("any",), choices=("any", "trash", *WOO_STATUSES)),
        Arg("customer", "integer"),
        Arg("product", "integer"),
        Arg("dp", "integer", 2),
    )


_DETAIL_ARGS: Final = (Arg("context", "enum", "view", choices=("view", "edit")),)


class WooDialect(Dialect):
    """WooCommerce orders (see the module docstring for what is checked and what is simplified)."""

    api = "woocommerce"
    prefixes = ("/wp-json/",)
    default_token = "ck_5f3c1a9e0b7d4c2e8f6a1b3d5e7f9a0c2e4b6d8f:cs_9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d"
    transitions = WOO_TRANSITIONS
    births = (("pending", 0.45), ("processing", 0.35), ("on-hold", 0.15), ("checkout-draft", 0.05))
    initial = "pending"
    delete_share = 0.04

    def __init__(self, options: WooOptions, **kw: Any) -> None:
        super().__init__(**kw)
        self.options = options
        self._offset = timedelta(hours=options.utc_offset_hours)
        self._args = _list_args(options.max_per_page)
        self._next_id = 700 + self.core.rng.randrange(300)
        self.actions = {"trash": self._trash, "untrash": self._untrash}

    @property
    def list_path(self) -> str:
        return LIST_PATH

    def auth_headers(self) -> dict[str, str]:
        return {"authorization": "Basic " + base64.b64encode(self.token.encode()).decode()}

    # Orders ------------------------------------------------------------------------------------------------
    def build(self, state: str) -> Row:
        core, rng = self.core, self.core.rng
        created = core.creation_time()
        self._next_id += rng.randint(1, 3)  # post ids are shared with other content: orders have gaps
        oid = self._next_id
        body = new_order(oid, state, rng, self.options.currency)
        row = Row(str(oid), core.store.next_seq(), state, created, created, body, {"id": oid})
        self._stamp(row, "date_created", created)
        self._apply(row)
        return row

    def on_state(self, row: Row, before: str) -> None:
        if row.state == "trash":
            row.extra["untrash_to"] = before
        self._apply(row)

    def on_touch(self, row: Row) -> None:
        self._stamp(row, "date_modified", row.updated)

    def _apply(self, row: Row) -> None:
        """Set the status and what follows from it; ``row.updated`` is the time of the change."""
        body, status = row.body, row.state
        body["status"] = status
        self._stamp(row, "date_modified", row.updated)
        online = body["payment_method"] in _ONLINE
        if status in _PAID and body["date_paid"] is None:
            self._stamp(row, "date_paid", row.updated)
            if online:
                body["transaction_id"] = f"txn_{row.extra['id']:08d}{self.core.rng.getrandbits(32):08x}"
        if status == "completed" and body["date_completed"] is None:
            self._stamp(row, "date_completed", row.updated)
        if status == "refunded" and not body["refunds"]:
            body["refunds"] = [{"id": row.extra["id"] + 1, "reason": "", "total": f"-{body['total']}"}]
        body["needs_payment"] = status in {"pending", "failed"} and float(body["total"]) > 0
        body["is_editable"] = status in _EDITABLE
        key = body["order_key"]
        pay = f"/checkout/order-pay/{row.extra['id']}/?pay_for_order=true&key={key}"
        body["payment_url"] = pay if body["needs_payment"] else ""

    def _stamp(self, row: Row, name: str, at: datetime) -> None:
        row.body[name] = local_naive(at, self._offset)
        row.body[f"{name}_gmt"] = local_naive(at, timedelta(0))

    def moves(self, row: Row) -> tuple[str, ...]:
        if row.state == "trash":
            return (str(row.extra.get("untrash_to", "pending")),)
        return self.transitions[row.state]

    def step_moves(self, row: Row) -> tuple[str, ...]:
        return tuple(s for s in self.moves(row) if s != "trash")

    def why_undeletable(self, row: Row) -> str | None:
        return None  # DELETE /orders/{id}?force=true removes any order for good

    def delete_candidates(self) -> list[str]:
        return self.core.store.keys_in("trash")

    def side_change(self) -> bool:
        """Trash a cancelled, failed or refunded order (shops clean up)."""
        done = [k for s in ("cancelled", "failed", "refunded") for k in self.core.store.keys_in(s)]
        row = self.core.store.get(self.core.rng.choice(done)) if done else None
        if row is None:
            return False
        self.move(row, "trash")
        return True

    def _trash(self, row: Row) -> None:
        if row.state == "trash":
            raise ValueError(f"woocommerce order {row.key} is already in the trash")
        self.move(row, "trash")

    def _untrash(self, row: Row) -> None:
        if row.state != "trash":
            raise ValueError(f"woocommerce order {row.key} is not in the trash")
        self.move(row, self.moves(row)[0])

    def render(self, row: Row, base_url: str) -> dict[str, Any]:
        body = super().render(row, base_url)
        links: dict[str, Any] = {
            "self": [{"href": f"{base_url}{LIST_PATH}/{row.key}"}],
            "collection": [{"href": f"{base_url}{LIST_PATH}"}],
        }
        if body["customer_id"]:
            links["customer"] = [{"href": f"{base_url}/wp-json/wc/v3/customers/{body['customer_id']}"}]
        body["_links"] = links
        return body

    # HTTP --------------------------------------------------------------------------------------------------
    def gate(self, req: Request) -> SimResponse | None:
        route = _ROUTE.match(req.path)
        if route is None:
            return self.not_found(req)
        authed, refusal = self._authenticate(req)
        if refusal is not None:
            return refusal
        _, invalid = validate(self._args if route["id"] is None else _DETAIL_ARGS, req.params)
        if invalid is not None:
            return invalid
        if not authed:
            what = "list resources" if route["id"] is None else "view this resource"
            return wp_error("woocommerce_rest_cannot_view", f"Sorry, you cannot {what}.", 401)
        return None

    def answer(self, req: Request) -> SimResponse:
        route = _ROUTE.match(req.path)
        if route is not None and route["id"] is not None:
            row = self.core.store.get(str(int(route["id"])))
            if row is None:
                return wp_error("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 404)
            return SimResponse(200, orjson.dumps(self.render(row, req.base_url)), WP_JSON)
        values, _ = validate(self._args, req.params)
        rows = self._listing(values)
        per_page, page = int(values["per_page"]), int(values["page"])
        total, pages = len(rows), math.ceil(len(rows) / per_page)
        start = abs(int(values["offset"])) if values["offset"] is not None else (page - 1) * per_page
        body = [self.render(row, req.base_url) for row in rows[start : start + per_page]]
        headers = [("X-WP-Total", str(total)), ("X-WP-TotalPages", str(pages)), ("Allow", "GET, POST")]
        links = []
        if page > 1:
            links.append((self._page_url(req, min(page - 1, pages)), "prev"))
        if pages > page:
            links.append((self._page_url(req, page + 1), "next"))
        if links:
            headers.append(("Link", link_header(links)))
        return SimResponse(200, orjson.dumps(body), WP_JSON, headers)

    @staticmethod
    def _page_url(req: Request, page: int) -> str:
        """The request's own URL and query with ``page`` replaced (as ``add_query_arg`` writes it)."""
        return build_url(req.base_url, LIST_PATH, with_params(req.pairs, {"page": str(page)}))

    def _listing(self, values: Mapping[str, Any]) -> list[Row]:
        """The orders the validated arguments select, in the order asked for."""
        statuses: Sequence[str] = values["status"]
        wanted, anything = set(statuses), "any" in statuses  # "any": every status but trash, whatever else is listed
        include, exclude = set(values["include"]), set(values["exclude"])
        gmt = bool(values["dates_are_gmt"])
        checks: list[Callable[[Row], bool]] = []
        if not anything:
            checks.append(lambda r: r.state in wanted)
        else:
            checks.append(lambda r: r.state != "trash")
        if include:
            checks.append(lambda r: r.extra["id"] in include)
        if exclude:
            checks.append(lambda r: r.extra["id"] not in exclude)
        if values["parent"] and 0 not in values["parent"]:
            checks.append(lambda r: False)
        if 0 in values["parent_exclude"]:
            checks.append(lambda r: False)
        if values["customer"] is not None:
            customer = abs(int(values["customer"]))
            checks.append(lambda r: r.body["customer_id"] == customer)
        if values["product"] is not None:
            product = abs(int(values["product"]))
            checks.append(lambda r: any(li["product_id"] == product for li in r.body["line_items"]))
        if values["search"]:
            needle = str(values["search"]).lower()
            checks.append(lambda r: needle in _haystack(r))
        for name, attr, later in (
            ("after", "created", True),
            ("before", "created", False),
            ("modified_after", "updated", True),
            ("modified_before", "updated", False),
        ):
            if values[name]:
                checks.append(self._date_check(str(values[name]), attr, later=later, gmt=gmt))
        rows = [r for r in self.core.store.rows() if all(check(r) for check in checks)]
        return self._sorted(rows, values)

    def _date_check(self, raw: str, attr: str, *, later: bool, gmt: bool) -> Callable[[Row], bool]:
        parsed = parse_iso(raw)
        bound = aware(parsed, timedelta(0) if gmt else self._offset) if parsed else datetime.max.replace(tzinfo=UTC)
        if later:
            return lambda r: bool(getattr(r, attr) > bound)
        return lambda r: bool(getattr(r, attr) < bound)

    def _sorted(self, rows: list[Row], values: Mapping[str, Any]) -> list[Row]:
        orderby, descending = str(values["orderby"]), values["order"] == "desc"
        if not self.options.honor_orderby:
            orderby, descending = "date", True
        if orderby == "id":
            return sorted(rows, key=lambda r: int(r.extra["id"]), reverse=descending)
        if orderby == "modified":
            return sorted(rows, key=lambda r: (r.updated, int(r.extra["id"])), reverse=descending)
        if orderby == "include" and values["include"]:
            place = {oid: i for i, oid in enumerate(values["include"])}
            return sorted(rows, key=lambda r: place[r.extra["id"]])
        return sorted(rows, key=lambda r: (r.created, int(r.extra["id"])), reverse=descending)  # date, title, slug

    def _authenticate(self, req: Request) -> tuple[bool, SimResponse | None]:
        """(authenticated, refusal): WooCommerce's basic-auth path over the query parameters or the header."""
        key, secret = req.first("consumer_key") or "", req.first("consumer_secret") or ""
        if not (key and secret):
            key, secret = _basic(req.headers.get("authorization", ""))
        if not (key and secret):
            return False, None
        my_key, _, my_secret = self.token.partition(":")
        if self.revoked or not hmac.compare_digest(key.encode(), my_key.encode()):
            return False, None  # no such key: WooCommerce deletes revoked keys
        if not hmac.compare_digest(secret.encode(), my_secret.encode()):
            refusal = wp_error("woocommerce_rest_authentication_error", "Consumer secret is invalid.", 401)
            refusal.headers.append(("WWW-Authenticate", _BASIC_REALM))
            return False, refusal
        return True, None

    def drift_out(self, req: Request) -> None:
        """Trash the first order of the requested listing (restore it when the listing is the trash)."""
        values, invalid = validate(self._args, req.params)
        rows = self._listing(values) if invalid is None else []
        if rows:
            self.move(rows[0], self.moves(rows[0])[0] if rows[0].state == "trash" else "trash")

    def unauthorized(self, req: Request) -> SimResponse:
        return wp_error("woocommerce_rest_cannot_view", "Sorry, you cannot list resources.", 401)

    def rate_limited(self) -> SimResponse:
        return wp_error("rate_limit_exceeded", "Too many requests. Please wait and try again.", 429)

    def server_error(self, status: int) -> SimResponse:
        resp = wp_error("internal_server_error", _CRITICAL, status)
        body = orjson.loads(resp.body)
        resp.body = orjson.dumps({**body, "additional_errors": []})
        return resp

    def error_body(self) -> SimResponse:
        return SimResponse(200, _NOTICE + b"[]", WP_JSON)

    def not_found(self, req: Request) -> SimResponse:
        return wp_error("rest_no_route", "No route was found matching the URL and request method.", 404)

    def decorate(self, resp: SimResponse, req: Request) -> SimResponse:
        resp.headers += [
            ("X-Robots-Tag", "noindex"),
            ("X-Content-Type-Options", "nosniff"),
            ("Access-Control-Expose-Headers", "X-WP-Total, X-WP-TotalPages, Link"),
        ]
        return resp


def _haystack(row: Row) -> str:
    billing = row.body["billing"]
    return " ".join((row.key, billing["first_name"], billing["last_name"], billing["email"])).lower()


def _basic(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return user, password

"""Stripe PaymentIntents: ``GET /v1/payment_intents`` and ``/v1/payment_intents/{id}``.

As Stripe's API reference has it: the secret key as a Bearer token (or as the HTTP Basic user, empty password);
``{"object": "list", "url", "has_more", "data"}``, newest first, no total; ``limit`` 1-100 (default 10; anything
else is a 400 ``parameter_invalid_integer``); cursors ``starting_after``/``ending_before`` are object ids;
``created`` as an integer or ``created[gt|gte|lt|lte]``; ``customer``. The list has no ``status`` filter (that is
the Search API): an unknown parameter is a 400 ``parameter_unknown``, as Stripe answers. Errors are
``{"error": {"type", "code", "message", "param", "doc_url", ...}}``; a missing key, a wrong one (masked in the
message) and an expired (here: revoked) one each get Stripe's own 401; every answer has ``Request-Id`` and
``Stripe-Version``.

Switchable (``StripeOptions``): ``has_more`` (False: a Stripe-like API without it; a client must stop on a short
page). Simplified: a 429 also carries ``Retry-After`` (the simulator's fault contract; Stripe sends none); the
order within one second of ``created`` is creation order."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from orderwatch.simulator.shops.dialect import Dialect, Request, json_response
from orderwatch.simulator.shops.ids import base62
from orderwatch.simulator.shops.keyset import Ordering
from orderwatch.simulator.shops.people import person
from orderwatch.simulator.shops.store import Row
from orderwatch.simulator.shops.timefmt import unix
from orderwatch.simulator.wire import SimResponse

STRIPE_TRANSITIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "requires_payment_method": ("requires_confirmation", "canceled"),
    "requires_confirmation": (
        "requires_action",
        "processing",
        "requires_capture",
        "succeeded",
        "requires_payment_method",
        "canceled",
    ),
    "requires_action": ("processing", "requires_capture", "succeeded", "requires_payment_method", "canceled"),
    "processing": ("succeeded", "requires_payment_method"),
    "requires_capture": ("succeeded", "canceled"),
    "succeeded": (),
    "canceled": (),
}
LIST_PATH: Final = "/v1/payment_intents"
_DETAIL: Final = re.compile(r"^/v1/payment_intents/(?P<id>[^/]+)$")
_KNOWN: Final = frozenset({"limit", "starting_after", "ending_before", "customer", "customer_account", "created"})
_CREATED: Final = {"gt": (1, False), "gte": (1, True), "lt": (-1, False), "lte": (-1, True)}
_AMOUNTS: Final = (999, 1500, 2000, 4999, 12900, 250)
_NO_KEY: Final = (
    "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer "
    "auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for "
    "details, or we can help at https://support.stripe.com/."
)
_DECLINE: Final = {
    "code": "card_declined",
    "decline_code": "generic_decline",
    "doc_url": "https://stripe.com/docs/error-codes/card-declined",
    "message": "Your card was declined.",
    "type": "card_error",
}


@dataclass(frozen=True, slots=True)
class StripeOptions:
    """Where Stripe-like APIs differ: ``has_more`` (False: the list omits it), the ``Stripe-Version`` answered."""

    has_more: bool = True
    api_version: str = "2024-06-20"
    currency: str = "usd"


class StripeDialect(Dialect):
    """Stripe PaymentIntents (see the module docstring for what is checked and what is simplified)."""

    api = "stripe-payment-intents"
    prefixes = ("/v1/",)
    default_token = "sk_test_51PsimOrderwatchKey0000000000000000000000000000a1b2"
    transitions = STRIPE_TRANSITIONS
    births = (
        ("requires_payment_method", 0.6),
        ("requires_confirmation", 0.2),
        ("succeeded", 0.15),
        ("requires_action", 0.05),
    )
    initial = "requires_payment_method"

    def __init__(self, options: StripeOptions, **kw: Any) -> None:
        super().__init__(**kw)
        self.options = options
        self._customers = [f"cus_{base62(self.core.rng, 14)}" for _ in range(6)]
        self._ordering = Ordering(lambda r: (unix(r.created), r.seq), descending=True)

    @property
    def list_path(self) -> str:
        return LIST_PATH

    # Orders ------------------------------------------------------------------------------------------------
    def build(self, state: str) -> Row:
        core, rng = self.core, self.core.rng
        created = core.creation_time()
        pid = f"pi_{base62(rng, 24)}"
        manual = rng.random() < 0.15
        body: dict[str, Any] = {
            "id": pid,
            "object": "payment_intent",
            "amount": rng.choice(_AMOUNTS),
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "manual" if manual else "automatic_async",
            "client_secret": f"{pid}_secret_{base62(rng, 25)}",
            "confirmation_method": "automatic",
            "created": unix(created),
            "currency": self.options.currency,
            "customer": rng.choice(self._customers) if rng.random() < 0.6 else None,
            "description": None,
            "invoice": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {"order_id": str(4000 + len(core.store))},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_configuration_details": None,
            "payment_method_options": {"card": {"installments": None, "request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": person(rng).email if rng.random() < 0.5 else None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": state,
            "transfer_data": None,
            "transfer_group": None,
        }
        row = Row(pid, core.store.next_seq(), state, created, created, body)
        self._apply(row, "")
        return row

    def on_state(self, row: Row, before: str) -> None:
        self._apply(row, before)

    def _apply(self, row: Row, before: str) -> None:
        body, status, rng = row.body, row.state, self.core.rng
        body["status"] = status
        if status == "requires_payment_method":
            body["payment_method"] = None
            body["last_payment_error"] = dict(_DECLINE) if before else None
        elif body["payment_method"] is None:
            body["payment_method"] = f"pm_{base62(rng, 24)}"
        if status in {"processing", "requires_capture", "succeeded"} and body["latest_charge"] is None:
            body["latest_charge"] = f"ch_{base62(rng, 24)}"
        if status == "requires_capture":
            body["capture_method"] = "manual"
        body["amount_capturable"] = body["amount"] if status == "requires_capture" else 0
        body["amount_received"] = body["amount"] if status == "succeeded" else 0
        body["next_action"] = (
            {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
            if status == "requires_action"
            else None
        )
        if status == "canceled":
            body["canceled_at"] = unix(row.updated)
            abandoned = before == "requires_payment_method"
            body["cancellation_reason"] = "abandoned" if abandoned else "requested_by_customer"

    # HTTP --------------------------------------------------------------------------------------------------
    def gate(self, req: Request) -> SimResponse | None:
        if req.path.rstrip("/") != LIST_PATH and not _DETAIL.match(req.path):
            return self.not_found(req)
        key = _key(req.headers.get("authorization", ""))
        if not key:
            return self._error(401, None, _NO_KEY, auth=True)
        if not hmac.compare_digest(key.encode(), self.token.encode()):
            return self._error(401, None, f"Invalid API Key provided: {_mask(key)}", auth=True)
        if self.revoked:
            return self._error(401, "api_key_expired", f"Expired API Key provided: {_mask(key)}", auth=True)
        if req.path.rstrip("/") != LIST_PATH:
            return None
        for name in req.params:
            if not _known(name):
                return self._error(400, "parameter_unknown", f"Received unknown parameter: {name}", param=name)
        for name in ("limit", *(f"created[{op}]" for op in _CREATED), "created"):
            raw = req.first(name)
            if raw is not None and not re.fullmatch(r"-?\d+", raw):
                return self._error(400, "parameter_invalid_integer", f"Invalid integer: {raw}", param=name)
        limit = int(req.first("limit") or 10)
        if not 1 <= limit <= 100:
            bound = "greater than or equal to 1" if limit < 1 else "less than or equal to 100"
            return self._error(400, "parameter_invalid_integer", f"This value must be {bound}.", param="limit")
        after, before = req.first("starting_after"), req.first("ending_before")
        if after and before:
            msg = "You may only specify one of these parameters: ending_before, starting_after."
            return self._error(400, None, msg)
        for name, value in (("starting_after", after), ("ending_before", before)):
            if value and value not in self.core.store:
                return self._error(400, "resource_missing", f"No such payment_intent: '{value}'", param=name)
        return None

    def answer(self, req: Request) -> SimResponse:
        match = _DETAIL.match(req.path)
        if match is not None:
            row = self.core.store.get(match["id"])
            if row is None:
                msg = f"No such payment_intent: '{match['id']}'"
                return self._error(404, "resource_missing", msg, param="intent")
            return json_response(200, self.render(row, req.base_url))
        limit = int(req.first("limit") or 10)
        rows = [r for r in self.core.store.rows() if all(check(r) for check in self._filters(req))]
        after, before = req.first("starting_after"), req.first("ending_before")
        if after:
            pivot = self._ordering.key(self._row(after))
            window = self._ordering.after(rows, pivot)
            page = window[:limit]
        elif before:
            pivot = self._ordering.key(self._row(before))
            window = self._ordering.before(rows, pivot)
            page = window[-limit:]
        else:
            window = self._ordering.apply(rows)
            page = window[:limit]
        body: dict[str, Any] = {"object": "list", "url": LIST_PATH}
        if self.options.has_more:
            body["has_more"] = len(window) > limit
        body["data"] = [self.render(r, req.base_url) for r in page]
        return json_response(200, body)

    def _row(self, key: str) -> Row:
        row = self.core.store.get(key)
        assert row is not None  # gate checked it
        return row

    def _filters(self, req: Request) -> list[Callable[[Row], bool]]:
        checks: list[Callable[[Row], bool]] = []
        customer = req.first("customer")
        if customer:
            checks.append(lambda r: r.body["customer"] == customer)
        exact = req.first("created")
        if exact is not None:
            checks.append(lambda r: r.body["created"] == int(exact))
        for op, (sign, inclusive) in _CREATED.items():
            raw = req.first(f"created[{op}]")
            if raw is not None:
                checks.append(_created_check(int(raw), sign, inclusive))
        return checks

    def _error(
        self, status: int, code: str | None, message: str, *, param: str | None = None, auth: bool = False
    ) -> SimResponse:
        error: dict[str, Any] = {}
        if code:
            error["code"] = code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        error["message"] = message
        if param:
            error["param"] = param
        if not auth:
            error["request_log_url"] = "https://dashboard.stripe.com/test/logs"
        error["type"] = "invalid_request_error"
        headers = [("WWW-Authenticate", 'Basic realm="Stripe"')] if status == 401 else []
        return json_response(status, {"error": error}, headers)

    def unauthorized(self, req: Request) -> SimResponse:
        return self._error(401, "api_key_expired", f"Expired API Key provided: {_mask(self.token)}", auth=True)

    def rate_limited(self) -> SimResponse:
        msg = "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
        resp = self._error(429, "rate_limit", msg)
        resp.headers.append(("Stripe-Should-Retry", "true"))
        return resp

    def server_error(self, status: int) -> SimResponse:
        body = {"error": {"message": "An unknown error occurred", "type": "api_error"}}
        return json_response(status, body, [("Stripe-Should-Retry", "true")])

    def error_body(self) -> SimResponse:
        return json_response(200, {"error": {"message": "An unknown error occurred", "type": "api_error"}})

    def not_found(self, req: Request) -> SimResponse:
        msg = (
            f"Unrecognized request URL ({req.method}: {req.path}). Please see https://stripe.com/docs or we can help "
            "at https://support.stripe.com/."
        )
        return json_response(404, {"error": {"message": msg, "type": "invalid_request_error"}})

    def decorate(self, resp: SimResponse, req: Request) -> SimResponse:
        resp.headers.append(("Request-Id", f"req_{base62(self.core.aux, 14)}"))
        resp.headers.append(("Stripe-Version", self.options.api_version))
        return resp


def _known(name: str) -> bool:
    if name in _KNOWN or name == "expand[]" or re.fullmatch(r"expand\[\d+\]", name):
        return True
    return name.startswith("created[") and name[8:-1] in _CREATED and name.endswith("]")


def _created_check(value: int, sign: int, inclusive: bool) -> Callable[[Row], bool]:
    if sign > 0:
        return (lambda r: r.body["created"] >= value) if inclusive else (lambda r: r.body["created"] > value)
    return (lambda r: r.body["created"] <= value) if inclusive else (lambda r: r.body["created"] < value)


def _key(header: str) -> str:
    """The secret key from ``Authorization: Bearer KEY`` or ``Basic base64(KEY:)``."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


def _mask(key: str) -> str:
    """``sk_test_****...1234``: Stripe shows the prefix and the last four characters."""
    prefix = m.group(0) if (m := re.match(r"^(sk|rk|pk)_(test|live)_", key)) else ""
    rest = key[len(prefix) :]
    return prefix + ("*" * (len(rest) - 4) + rest[-4:] if len(rest) > 4 else rest)

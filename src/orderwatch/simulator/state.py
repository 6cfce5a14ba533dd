"""The simulated orders of both APIs: seeded, thread-safe (one lock), every change recorded in ``history``.

``Simulator`` owns the orders and their state machines, the faults, the tokens and the statistics; it answers a
request by framing it (faults, auth, statistics) around ``routes``, under its ``conventions``.
"""

from __future__ import annotations

import hmac
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qs, urlsplit

import orjson

from orderwatch.simulator import routes, wire
from orderwatch.simulator.conventions import AceListKey, Conventions
from orderwatch.simulator.routes import Api, Route
from orderwatch.simulator.tables import OrderTable
from orderwatch.simulator.wire import Params, SimResponse, ts

__all__ = [
    "ACE_PAY_WAYS",
    "ACE_TRANSITIONS",
    "APIS",
    "FAULT_KINDS",
    "LSKY_TRANSITIONS",
    "TRANSITIONS",
    "Api",
    "Faults",
    "SimChange",
    "Simulator",
]
ChangeKind = Literal["created", "state", "deleted"]
APIS: Final = ("ace", "lsky")
ACE_TRANSITIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "Pending": ("Paid", "Expired", "Failed"),
    "Paid": ("Finished", "Failed", "Refunded"),
    "Finished": ("Refunded",),
    "Expired": (),
    "Failed": (),
    "Refunded": (),
}
LSKY_TRANSITIONS: Final[Mapping[str, tuple[str, ...]]] = {"unpaid": ("paid", "cancelled"), "paid": (), "cancelled": ()}
TRANSITIONS: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = {"ace": ACE_TRANSITIONS, "lsky": LSKY_TRANSITIONS}
# Faults that replace the answer; the others (slow, truncated, drift_*) alter a real answer.
REPLACING_FAULTS: Final = frozenset({"http500", "http502", "http503", "html", "rate_limit", "error_body", "auth"})
FAULT_KINDS: Final = REPLACING_FAULTS | {"truncated", "slow", "drift_insert", "drift_delete"}
ACE_PAY_WAYS: Final = ("WechatPay", "AliPay", "Stripe", "Card", "X402", "PayPal", "AppleIAP", "Reward", "BankTransfer")
_EPOCH: Final = datetime(2024, 6, 15, 10, 0, 0, tzinfo=UTC)  # where the fake clock starts
_CST: Final = timezone(timedelta(hours=8))  # Lsky trade numbers carry the shop's local time
_CLOCK_STEPS: Final = (0.0, 0.2, 0.4, 0.7, 1.3, 2.0, 5.0, 30.0, 120.0)  # seconds between two creations
_ACE_PACKAGES: Final = ((100, 9.99), (500, 49.99), (1000, 89.99), (5000, 399.0), (10, 0.0))  # last: free trial
_LSKY_PRODUCTS: Final = (("月卡", 43200, 9.9), ("季卡", 129600, 25.0), ("测试套餐", 1, 0.01), ("免费体验", 1440, 0.0))
_SNAPSHOT: Final = {
    "name": "测试套餐",
    "intro": "test",
    "features": ["不限上传次数", "无限空间", "每月100G流量", "全IPLC专线,不限速", "原生IP解锁流媒体"],
    "badge": "促销",
}


@dataclass(frozen=True, slots=True)
class SimChange:
    """One change of the simulated state: an order was created, changed state, or was deleted."""

    api: str
    key: str
    kind: ChangeKind
    from_state: str | None
    to_state: str | None
    seq: int


@dataclass
class Faults:
    """Faults: at random (``rate`` per request, drawn from ``kinds``) and one-shot (``queue``, served first)."""

    rate: float = 0.0
    kinds: set[str] = field(default_factory=set)
    slow_seconds: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    queue: dict[str, deque[str]] = field(default_factory=lambda: {api: deque() for api in APIS})

    def pick(self, api: str) -> str | None:
        """The fault for the next request to ``api``, or None."""
        if self.queue[api]:
            return self.queue[api].popleft()
        kinds = sorted(self.kinds & FAULT_KINDS)
        if kinds and self.rate > 0 and self.rng.random() < self.rate:
            return self.rng.choice(kinds)
        return None


class Simulator:
    """Thread-safe in-memory state of both orders APIs; ``handle_request`` answers one HTTP request.

    ``seed`` makes orders, ``step()`` and random faults reproducible. ``max_page_size`` silently clamps ``limit`` /
    ``per_page``. ``conventions`` say how the servers read requests and write answers where real servers differ
    (the default: the most forgiving reading); ``ace_list_key`` (``"items"``, the live API, or ``"results"``, the
    older docs) is a shorthand for ``conventions.ace_list``. Creation times come from ``clock`` (timezone-aware)
    or, by default, from a fake clock that starts at 2024-06-15T10:00:00Z and advances a little per created
    order; they never decrease.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        ace_token: str = "ace-token",
        lsky_token: str = "lsky-token",
        max_page_size: int = 100,
        ace_list_key: AceListKey | None = None,
        clock: Callable[[], datetime] | None = None,
        conventions: Conventions | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.max_page_size = max_page_size
        conventions = Conventions() if conventions is None else conventions
        self._conventions = conventions if ace_list_key is None else replace(conventions, ace_list=ace_list_key)
        self.history: list[SimChange] = []
        self.faults = Faults(rng=random.Random(seed ^ 0x5EED))
        self._rng = random.Random(seed)
        self._aux = random.Random(seed ^ 0xA0C)  # trace ids, drift sizes: never perturbs the orders
        self._tokens = {"ace": ace_token, "lsky": lsky_token}
        self._revoked: set[str] = set()
        self._clock = clock
        self._fake_now = _EPOCH
        self._tables = {
            "ace": OrderTable("id", "state", ACE_TRANSITIONS),
            "lsky": OrderTable("trade_no", "status", LSKY_TRANSITIONS),
        }
        self._requests = dict.fromkeys(APIS, 0)
        self._bytes = dict.fromkeys(APIS, 0)
        self._users = [str(self._uuid()) for _ in range(2)]
        self._packages = [(str(self._uuid()), str(self._uuid()), amt, price) for amt, price in _ACE_PACKAGES]
        self._choices: Mapping[str, Collection[str]] = {
            "state": frozenset(ACE_TRANSITIONS),
            "pay_way": frozenset(ACE_PAY_WAYS),
            "user_id": frozenset(self._users),
        }

    # Conventions ------------------------------------------------------------------------------------------
    @property
    def conventions(self) -> Conventions:
        """How the servers read requests and write answers; assign a new value to switch (see ``Conventions``)."""
        return self._conventions

    @conventions.setter
    def conventions(self, value: Conventions) -> None:
        if not isinstance(value, Conventions):
            raise TypeError(f"conventions must be a Conventions, not {type(value).__name__}")
        with self.lock:  # a request in progress keeps the conventions it started with
            self._conventions = value

    @property
    def ace_list_key(self) -> AceListKey:
        """The key of Ace's list: ``conventions.ace_list``."""
        return self._conventions.ace_list

    @ace_list_key.setter
    def ace_list_key(self, value: AceListKey) -> None:
        with self.lock:
            self.conventions = replace(self._conventions, ace_list=value)

    # Orders -----------------------------------------------------------------------------------------------
    def add_ace(self, n: int = 1, *, state: str = "Pending", price: float | None = None) -> list[str]:
        """Create ``n`` Ace orders in ``state`` (a random paid package unless ``price`` is given); return ids."""
        self._check_state("ace", state)
        with self.lock:
            return [self._create_ace(state, price) for _ in range(n)]

    def add_lsky(self, n: int = 1, *, status: str = "unpaid") -> list[str]:
        """Create ``n`` Lsky orders with ``status``; return their trade numbers."""
        self._check_state("lsky", status)
        with self.lock:
            return [self._create_lsky(status) for _ in range(n)]

    def set_state(self, api: Api, key: str, state: str) -> None:
        """Put an order in ``state`` (any known state, legal move or not) and record the change."""
        self._check_state(api, state)
        with self.lock:
            self._move(api, self._get(api, key), state)

    def delete(self, api: Api, key: str) -> None:
        """Delete an order and record it. Lsky only deletes cancelled orders (else ``ValueError``)."""
        with self.lock:
            order = self._get(api, key)
            if api == "lsky" and order["status"] != "cancelled":
                raise ValueError(f"lsky order {key} is {order['status']}: only cancelled orders can be deleted")
            self._remove(api, order)

    def step(self, n: int = 1) -> list[SimChange]:
        """Make ``n`` random legal moves (create, advance a state, delete a cancelled Lsky order); return them."""
        with self.lock:
            start = len(self.history)
            for _ in range(n):
                self._step_once()
            return self.history[start:]

    def orders(self, api: Api) -> list[dict[str, Any]]:
        """A copy of the current orders of ``api`` as the API returns them, oldest first."""
        with self.lock:
            return cast("list[dict[str, Any]]", orjson.loads(orjson.dumps(self._tables[api].orders)))

    def state_of(self, api: Api, key: str) -> str | None:
        """The current state of one order, or None when it does not exist."""
        with self.lock:
            table = self._tables[api]
            found = table.by_key.get(key)
            return None if found is None else str(found[table.state_field])

    # Faults, tokens, statistics ---------------------------------------------------------------------------
    def inject(self, api: Api, kind: str, count: int = 1) -> None:
        """Give the next ``count`` requests to ``api`` the fault ``kind`` (one of ``FAULT_KINDS``)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        with self.lock:
            self.faults.queue[api].extend([kind] * count)

    def revoke(self, api: Api) -> None:
        """Reject the token of ``api`` (with the API's real 401) until ``restore``."""
        with self.lock:
            self._revoked.add(api)

    def restore(self, api: Api) -> None:
        """Accept the token of ``api`` again."""
        with self.lock:
            self._revoked.discard(api)

    def requests(self, api: Api) -> int:
        """How many requests ``api`` answered since the last ``reset_stats``."""
        return self._requests[api]

    def bytes(self, api: Api) -> int:
        """How many response-body bytes ``api`` sent since the last ``reset_stats``."""
        return self._bytes[api]

    def reset_stats(self) -> None:
        """Zero the request and byte counters."""
        with self.lock:
            self._requests = dict.fromkeys(APIS, 0)
            self._bytes = dict.fromkeys(APIS, 0)

    # State internals (caller holds the lock) ---------------------------------------------------------------
    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def _trace_id(self) -> str:
        return str(uuid.UUID(int=self._aux.getrandbits(128), version=4))

    def _now(self) -> datetime:
        return self._clock() if self._clock is not None else self._fake_now

    def _unix(self) -> int:
        return int(self._now().timestamp())

    def _creation_time(self, api: str) -> tuple[datetime, str]:
        """Now and its timestamp, never before the newest order's (Lsky keeps whole seconds: orders share one)."""
        self._fake_now += timedelta(seconds=self._rng.choice(_CLOCK_STEPS) + self._rng.random() / 1000)
        created = self._tables[api].created
        now, newest = self._now(), created[-1] if created else ""
        stamp = ts(now, whole_seconds=api == "lsky")
        return (now, stamp) if stamp >= newest else (datetime.fromisoformat(newest), newest)

    @staticmethod
    def _check_state(api: str, state: str) -> None:
        if state not in TRANSITIONS[api]:
            raise ValueError(f"unknown {api} state {state!r}; expected one of {sorted(TRANSITIONS[api])}")

    def _get(self, api: str, key: str) -> dict[str, Any]:
        try:
            return self._tables[api].by_key[key]
        except KeyError:
            raise KeyError(f"no {api} order {key!r}") from None

    def _record(self, api: str, key: str, kind: ChangeKind, before: str | None, after: str | None) -> None:
        self.history.append(SimChange(api, key, kind, before, after, len(self.history) + 1))

    def _insert(self, api: str, key: str, order: dict[str, Any], state: str) -> None:
        self._tables[api].insert(order)
        self._record(api, key, "created", None, state)

    def _create_ace(self, state: str, price: float | None) -> str:
        _, created = self._creation_time("ace")
        paying = self._packages[:-1]
        same = [p for p in self._packages if p[3] == price]
        pkg_id, app_id, amount, pkg_price = same[0] if same else self._rng.choice(paying)
        price = pkg_price if price is None else price
        key, pay_way = str(self._uuid()), self._rng.choice(ACE_PAY_WAYS)
        order: dict[str, Any] = {
            "id": key,
            "user_id": self._users[0] if self._rng.random() < 0.8 else self._users[1],
            "application_id": app_id,
            "package_id": pkg_id,
            "amount": amount,
            "price": price,
            "discount": 1.0,
            "pay_way": pay_way,
            "pay_id": f"{pay_way.lower()}_{key[:8]}",
            "pay_url": f"https://pay.example.invalid/{key}",
            "state": "Pending",
            "remaining_amount": 0,
            "applications": [{"id": app_id, "type": "Usage", "remaining_amount": amount}],
            "packages": [{"id": pkg_id, "amount": amount, "price": price}],
            "tags": None,
            "metadata": None,
            "created_at": created,
            "updated_at": created,
        }
        self._apply("ace", order, state, created)
        self._insert("ace", key, order, state)
        return key

    def _create_lsky(self, status: str) -> str:
        created, stamp = self._creation_time("lsky")
        key = ""
        while not key or key in self._tables["lsky"].by_key:
            key = f"{created.astimezone(_CST):%Y%m%d%H%M%S}{self._rng.randrange(100000):05d}_002"
        name, duration, price = self._rng.choice(_LSKY_PRODUCTS if status == "paid" else _LSKY_PRODUCTS[:3])
        order: dict[str, Any] = {
            "trade_no": key,
            "amount": price,
            "snapshot": _SNAPSHOT,
            "product": {"name": name, "duration": duration, "price": price},
            "pay_method": "",
            "status": "unpaid",
            "paid_at": None,
            "canceled_at": None,
            "created_at": stamp,
            "coupon": None,
        }
        self._apply("lsky", order, status, stamp)
        self._insert("lsky", key, order, status)
        return key

    def _apply(self, api: str, order: dict[str, Any], state: str, stamp: str) -> None:
        """Set the state field and the fields that go with it (updated_at, pay_url, paid_at, ...)."""
        if api == "ace":
            order["state"], order["updated_at"] = state, stamp
            order["pay_url"] = order["pay_url"] if state == "Pending" else None
            order["remaining_amount"] = order["amount"] if state == "Finished" else 0
            return
        order["status"] = state
        if state == "paid":
            order["paid_at"] = stamp
            order["pay_method"] = self._rng.choice(("alipay", "wechat")) if order["amount"] else ""
        elif state == "cancelled":
            order["canceled_at"] = stamp

    def _move(self, api: str, order: dict[str, Any], state: str) -> None:
        table = self._tables[api]
        before, key = order[table.state_field], order[table.key_field]
        self._fake_now += timedelta(seconds=1)
        self._apply(api, order, state, max(ts(self._now(), whole_seconds=api == "lsky"), order["created_at"]))
        table.restate(order, before)
        self._record(api, key, "state", before, state)

    def _remove(self, api: str, order: dict[str, Any]) -> None:
        table = self._tables[api]
        key, state = order[table.key_field], order[table.state_field]
        table.remove(order)
        self._record(api, key, "deleted", state, None)

    def _step_once(self) -> None:
        api = self._rng.choice(APIS)
        table = self._tables[api]
        roll, buckets = self._rng.random(), table.buckets
        if api == "lsky" and roll < 0.12 and buckets["cancelled"].items:
            self._remove(api, table.by_key[self._rng.choice(buckets["cancelled"].items)])
            return
        movable = [s for s, nxt in TRANSITIONS[api].items() if nxt and buckets[s].items]
        if roll >= 0.35 and movable:
            state = self._rng.choices(movable, weights=[len(buckets[s].items) for s in movable])[0]
            order = table.by_key[self._rng.choice(buckets[state].items)]
            self._move(api, order, self._rng.choice(TRANSITIONS[api][state]))
        elif api == "ace":  # zero-price orders are born Paid or Finished
            free = self._rng.random() < 0.08
            self._create_ace(self._rng.choice(("Paid", "Finished")) if free else "Pending", 0.0 if free else None)
        else:  # zero-amount orders are born paid
            self._create_lsky("paid" if self._rng.random() < 0.05 else "unpaid")

    # HTTP -------------------------------------------------------------------------------------------------
    def handle_request(self, method: str, target: str, headers: Mapping[str, str], base_url: str) -> SimResponse:
        """Answer one request (``headers`` with lower-case names; ``base_url`` like ``http://host:port``)."""
        parts = urlsplit(target)
        path, params = parts.path, parse_qs(parts.query, keep_blank_values=True)
        api = routes.api_of(path)
        if api is None:
            return SimResponse(404, b"Not Found", "text/plain")
        with self.lock:
            self._requests[api] += 1
            fault = self.faults.pick(api)
            if fault in REPLACING_FAULTS:
                resp = wire.fault_response(api, str(fault), trace_id=self._trace_id(), unix=self._unix())
            else:
                route = routes.resolve(api, path, parts.query, self._conventions)
                if isinstance(route, SimResponse):  # a redirect or an unrouted 404: no view runs, so no auth
                    resp = self._alter(route, fault)
                else:
                    ctx = routes.Context(
                        self._conventions, base_url, base_url + target, self.max_page_size, self._unix, self._choices
                    )
                    resp = self._check_auth(api, headers) or self._answer(route, method, params, ctx, fault)
            if api == "lsky" and resp.status >= 400 and not wire.wants_json(headers):
                resp = wire.html_error(resp.status)
            self._bytes[api] += len(resp.body)
            return resp

    def _check_auth(self, api: str, headers: Mapping[str, str]) -> SimResponse | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return wire.unauthorized(api, invalid=False, trace_id=self._trace_id())
        if api in self._revoked or not hmac.compare_digest(token.strip().encode(), self._tokens[api].encode()):
            return wire.unauthorized(api, invalid=True, trace_id=self._trace_id())
        return None

    def _answer(self, route: Route, method: str, params: Params, ctx: routes.Context, fault: str | None) -> SimResponse:
        if method != "GET":
            return wire.method_not_allowed(route.api, method)
        if fault == "drift_insert":  # new orders push rows down
            for _ in range(self._aux.randint(1, 3)):
                if route.api == "ace":
                    self._create_ace("Pending", None)
                else:
                    self._create_lsky("unpaid")
        elif fault == "drift_delete":  # an order leaving the listing pulls rows up
            self._drift_out(route.api, params, ctx)
        return self._alter(routes.answer(self._tables[route.api], route, params, ctx), fault)

    def _alter(self, resp: SimResponse, fault: str | None) -> SimResponse:
        """Apply a fault that alters a real answer (``slow``, ``truncated``)."""
        if fault == "slow":
            resp.delay = self.faults.slow_seconds
        elif fault == "truncated":
            resp.body = resp.body[: len(resp.body) // 2]
        return resp

    def _drift_out(self, api: Api, params: Params, ctx: routes.Context) -> None:
        """Make the first order of the requested listing leave it (Lsky: cancel and delete; Ace: expire...)."""
        table = self._tables[api]
        if api == "lsky":
            _, rows, reverse = routes.lsky_listing(table, params, ctx)
            for order in reversed(rows) if reverse else rows:
                if order["status"] == "unpaid":
                    self._move(api, order, "cancelled")
                if order["status"] == "cancelled":
                    self._remove(api, order)
                    return
            return
        listed = routes.ace_listing(table, params, ctx)
        if isinstance(listed, SimResponse):
            return
        query, rows, reverse = listed
        states = query.states or {"Pending"}
        for order in reversed(rows) if reverse else rows:
            exits = [s for s in ACE_TRANSITIONS[order["state"]] if s not in states]
            if order["state"] in states and exits:
                self._move(api, order, "Expired" if "Expired" in exits else exits[0])
                return

"""The simulated orders of both APIs: seeded, thread-safe (one lock), every change recorded in ``history``."""

from __future__ import annotations

import bisect
import builtins
import hmac
import random
import threading
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qs, urlsplit

import orjson

from orderwatch.simulator import wire
from orderwatch.simulator.wire import Params, SimResponse, ts

Api = Literal["ace", "lsky"]
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


class _Bucket:
    """Keys of one state, with O(1) add, remove and random choice."""

    __slots__ = ("items", "pos")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.pos: dict[str, int] = {}

    def add(self, key: str) -> None:
        self.pos[key] = len(self.items)
        self.items.append(key)

    def remove(self, key: str) -> None:
        i, last = self.pos.pop(key), self.items.pop()
        if last != key:
            self.items[i], self.pos[last] = last, i


def _state_field(api: str) -> str:
    return "state" if api == "ace" else "status"


def _key_field(api: str) -> str:
    return "id" if api == "ace" else "trade_no"


class Simulator:
    """Thread-safe in-memory state of both orders APIs; ``handle_request`` answers one HTTP request.

    ``seed`` makes orders, ``step()`` and random faults reproducible. ``max_page_size`` silently clamps ``limit`` /
    ``per_page``; ``ace_list_key`` is ``"items"`` (live API) or ``"results"`` (older docs). Creation times come
    from ``clock`` (timezone-aware) or, by default, from a fake clock that starts at 2024-06-15T10:00:00Z and
    advances a little per created order; they never decrease.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        ace_token: str = "ace-token",
        lsky_token: str = "lsky-token",
        max_page_size: int = 100,
        ace_list_key: str = "items",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.max_page_size = max_page_size
        self.ace_list_key = ace_list_key
        self.history: list[SimChange] = []
        self.faults = Faults(rng=random.Random(seed ^ 0x5EED))
        self._rng = random.Random(seed)
        self._aux = random.Random(seed ^ 0xA0C)  # trace ids, drift sizes: never perturbs the orders
        self._tokens = {"ace": ace_token, "lsky": lsky_token}
        self._revoked: set[str] = set()
        self._clock = clock
        self._fake_now = _EPOCH
        self._orders: dict[str, list[dict[str, Any]]] = {api: [] for api in APIS}  # oldest first
        self._created: dict[str, list[str]] = {api: [] for api in APIS}  # their created_at, for bisection
        self._by_key: dict[str, dict[str, dict[str, Any]]] = {api: {} for api in APIS}
        self._buckets = {api: {s: _Bucket() for s in TRANSITIONS[api]} for api in APIS}
        self._version = dict.fromkeys(APIS, 0)
        self._cache: dict[tuple[str, str], tuple[int, Any]] = {}
        self._requests = dict.fromkeys(APIS, 0)
        self._bytes = dict.fromkeys(APIS, 0)
        self._users = [str(self._uuid()) for _ in range(2)]
        self._packages = [(str(self._uuid()), str(self._uuid()), amt, price) for amt, price in _ACE_PACKAGES]

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
            return cast("list[dict[str, Any]]", orjson.loads(orjson.dumps(self._orders[api])))

    def state_of(self, api: Api, key: str) -> str | None:
        """The current state of one order, or None when it does not exist."""
        with self.lock:
            found = self._by_key[api].get(key)
            return None if found is None else str(found[_state_field(api)])

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
        now, newest = self._now(), self._created[api][-1] if self._created[api] else ""
        stamp = ts(now, whole_seconds=api == "lsky")
        return (now, stamp) if stamp >= newest else (datetime.fromisoformat(newest), newest)

    @staticmethod
    def _check_state(api: str, state: str) -> None:
        if state not in TRANSITIONS[api]:
            raise ValueError(f"unknown {api} state {state!r}; expected one of {sorted(TRANSITIONS[api])}")

    def _get(self, api: str, key: str) -> dict[str, Any]:
        try:
            return self._by_key[api][key]
        except KeyError:
            raise KeyError(f"no {api} order {key!r}") from None

    def _record(self, api: str, key: str, kind: ChangeKind, before: str | None, after: str | None) -> None:
        self._version[api] += 1
        self.history.append(SimChange(api, key, kind, before, after, len(self.history) + 1))

    def _cached(self, api: str, name: str, build: Callable[[], Any]) -> Any:
        """``build()``, recomputed only after ``api`` changed."""
        hit = self._cache.get((api, name))
        if hit is None or hit[0] != self._version[api]:
            hit = self._cache[api, name] = (self._version[api], build())
        return hit[1]

    def _insert(self, api: str, key: str, order: dict[str, Any], state: str) -> None:
        self._orders[api].append(order)
        self._created[api].append(order["created_at"])
        self._by_key[api][key] = order
        self._buckets[api][state].add(key)
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
        while not key or key in self._by_key["lsky"]:
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
        before, key = order[_state_field(api)], order[_key_field(api)]
        self._fake_now += timedelta(seconds=1)
        self._apply(api, order, state, max(ts(self._now(), whole_seconds=api == "lsky"), order["created_at"]))
        self._buckets[api][before].remove(key)
        self._buckets[api][state].add(key)
        self._record(api, key, "state", before, state)

    def _remove(self, api: str, order: dict[str, Any]) -> None:
        key, state = order[_key_field(api)], order[_state_field(api)]
        i = bisect.bisect_left(self._created[api], order["created_at"])
        while self._orders[api][i] is not order:  # step over orders created in the same instant
            i += 1
        del self._orders[api][i], self._created[api][i], self._by_key[api][key]
        self._buckets[api][state].remove(key)
        self._record(api, key, "deleted", state, None)

    def _step_once(self) -> None:
        api = self._rng.choice(APIS)
        roll, buckets = self._rng.random(), self._buckets[api]
        if api == "lsky" and roll < 0.12 and buckets["cancelled"].items:
            self._remove(api, self._by_key[api][self._rng.choice(buckets["cancelled"].items)])
            return
        movable = [s for s, nxt in TRANSITIONS[api].items() if nxt and buckets[s].items]
        if roll >= 0.35 and movable:
            state = self._rng.choices(movable, weights=[len(buckets[s].items) for s in movable])[0]
            order = self._by_key[api][self._rng.choice(buckets[state].items)]
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
        api = "ace" if path.startswith("/api/v1/orders") else "lsky" if path.startswith("/api/v2/user/orders") else ""
        if not api:
            return SimResponse(404, b"Not Found", "text/plain")
        with self.lock:
            self._requests[api] += 1
            fault = self.faults.pick(api)
            if fault in REPLACING_FAULTS:
                resp = wire.fault_response(api, str(fault), trace_id=self._trace_id(), unix=self._unix())
            else:
                resp = self._check_auth(api, headers) or self._answer(api, method, path, params, base_url, fault)
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

    def _answer(self, api: str, method: str, path: str, params: Params, base: str, fault: str | None) -> SimResponse:
        if method != "GET":
            return wire.method_not_allowed(api, method)
        if fault == "drift_insert":  # new orders push rows down
            for _ in range(self._aux.randint(1, 3)):
                if api == "ace":
                    self._create_ace("Pending", None)
                else:
                    self._create_lsky("unpaid")
        elif fault == "drift_delete":  # an order leaving the listing pulls rows up
            self._drift_out(api, params)
        resp = self._route(api, path, params, base)
        if fault == "slow":
            resp.delay = self.faults.slow_seconds
        elif fault == "truncated":
            resp.body = resp.body[: len(resp.body) // 2]
        return resp

    def _route(self, api: str, path: str, params: Params, base: str) -> SimResponse:
        root = "/api/v1/orders" if api == "ace" else "/api/v2/user/orders"
        rest = path[len(root) :].strip("/")
        if not rest and api == "ace":
            query = wire.parse_ace_query(params)
            if isinstance(query, SimResponse):
                return query
            rows, reverse = self._ace_select(query)
            size, key = self.max_page_size, self.ace_list_key
            return SimResponse(200, wire.ace_page(rows, reverse=reverse, params=params, max_size=size, key=key))
        if not rest:
            rows, reverse = self._lsky_select(wire.parse_lsky_query(params))
            size, unix = self.max_page_size, self._unix()
            page = wire.lsky_page(rows, reverse=reverse, params=params, path=base + root, max_size=size, unix=unix)
            return SimResponse(200, page)
        if api == "ace" and rest == "summary":
            return SimResponse(200, self._ace_summary())
        order = self._by_key[api].get(rest)
        if order is None:
            return wire.not_found(api, self._unix())
        return SimResponse(200, orjson.dumps(order if api == "ace" else wire.lsky_wrap(order, self._unix())))

    def _ace_select(self, query: wire.AceQuery) -> tuple[list[dict[str, Any]], bool]:
        """The matching orders in the requested order, once the flag (reverse them) is applied."""
        orders, created = self._orders["ace"], self._created["ace"]
        lo = bisect.bisect_left(created, query.created_from) if query.created_from else 0
        hi = bisect.bisect_right(created, query.created_to) if query.created_to else len(orders)
        rows = orders if (lo, hi) == (0, len(orders)) else orders[lo:hi]
        if query.filters_rows:
            rows = [o for o in rows if query.matches(o)]
        if query.ordering:
            return rows, query.ordering == "-created_at"
        if rows is orders:  # the undocumented default order: by id, which means nothing to a client
            return self._cached("ace", "by-id", lambda: sorted(orders, key=lambda o: o["id"])), False
        return sorted(rows, key=lambda o: o["id"]), False

    def _ace_summary(self) -> builtins.bytes:
        def build() -> builtins.bytes:
            spent = sum(o["price"] for o in self._orders["ace"] if o["state"] in {"Paid", "Finished"})
            counts = {s: len(b.items) for s, b in self._buckets["ace"].items()}
            total = len(self._orders["ace"])
            return orjson.dumps({"total_count": total, "total_spent": round(spent, 2), "state_counts": counts})

        return cast("builtins.bytes", self._cached("ace", "summary", build))

    def _lsky_select(self, query: wire.LskyQuery) -> tuple[list[dict[str, Any]], bool]:
        """The matching orders in the requested order, once the flag (reverse them) is applied.

        Without a sort they come in an order that shifts with every change (MySQL without ORDER BY)."""
        all_rows = self._orders["lsky"]
        rows = [o for o in all_rows if query.matches(o)] if query.filters_rows else all_rows
        if query.sort in {"latest", "oldest"}:
            return rows, query.sort == "latest"
        version = self._version["lsky"]  # no ORDER BY: the database's whim, reshuffled by every change

        def shuffled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return sorted(rows, key=lambda o: zlib.crc32(f"{o['trade_no']}{version}".encode()))

        if rows is all_rows:
            return self._cached("lsky", "unsorted", lambda: shuffled(rows)), False
        return shuffled(rows), False

    def _drift_out(self, api: str, params: Params) -> None:
        """Make the first order of the requested listing leave it (Lsky: cancel and delete; Ace: expire...)."""
        if api == "lsky":
            rows, reverse = self._lsky_select(wire.parse_lsky_query(params))
            for order in reversed(rows) if reverse else rows:
                if order["status"] == "unpaid":
                    self._move(api, order, "cancelled")
                if order["status"] == "cancelled":
                    self._remove(api, order)
                    return
            return
        query = wire.parse_ace_query(params)
        if isinstance(query, SimResponse):
            return
        rows, reverse = self._ace_select(query)
        states = query.states or {"Pending"}
        for order in reversed(rows) if reverse else rows:
            exits = [s for s in ACE_TRANSITIONS[order["state"]] if s not in states]
            if order["state"] in states and exits:
                self._move(api, order, "Expired" if "Expired" in exits else exits[0])
                return

"""``ShopSimulator``: one shop or billing API (WooCommerce, Shopify, Stripe, Paddle or a configurable JSON API)
speaking real HTTP through ``SimServer``, with seeded orders, a history of every change, faults and statistics."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, get_args
from urllib.parse import parse_qs, urlsplit

from orderwatch.simulator.shops.dialect import Dialect, Request
from orderwatch.simulator.shops.generic import GenericDialect
from orderwatch.simulator.shops.generic_config import GenericOptions
from orderwatch.simulator.shops.paddle import PaddleDialect, PaddleOptions
from orderwatch.simulator.shops.shopify import ShopifyDialect, ShopifyOptions
from orderwatch.simulator.shops.store import Row
from orderwatch.simulator.shops.stripe import StripeDialect, StripeOptions
from orderwatch.simulator.shops.woocommerce import WooDialect, WooOptions
from orderwatch.simulator.state import FAULT_KINDS, REPLACING_FAULTS, Faults, SimChange
from orderwatch.simulator.wire import SimResponse

ShopApi = Literal["woocommerce", "shopify", "stripe-payment-intents", "paddle-transactions", "generic"]
SHOP_APIS: Final[tuple[ShopApi, ...]] = get_args(ShopApi)
ShopOptions = WooOptions | ShopifyOptions | StripeOptions | PaddleOptions | GenericOptions
_OPTIONS: Final[Mapping[str, type[ShopOptions]]] = {
    "woocommerce": WooOptions,
    "shopify": ShopifyOptions,
    "stripe-payment-intents": StripeOptions,
    "paddle-transactions": PaddleOptions,
    "generic": GenericOptions,
}


def _dialect(
    api: str, options: ShopOptions | None, seed: int, clock: Callable[[], datetime] | None, token: str | None
) -> Dialect:
    if api not in _OPTIONS:
        raise ValueError(f"unknown shop API {api!r}; expected one of {list(SHOP_APIS)}")
    if options is not None and not isinstance(options, _OPTIONS[api]):
        raise TypeError(f"{api} takes {_OPTIONS[api].__name__}, not {type(options).__name__}")
    kw: dict[str, Any] = {"seed": seed, "clock": clock, "token": token}
    if isinstance(options, WooOptions) or (options is None and api == "woocommerce"):
        return WooDialect(options or WooOptions(), **kw)
    if isinstance(options, ShopifyOptions) or (options is None and api == "shopify"):
        return ShopifyDialect(options or ShopifyOptions(), **kw)
    if isinstance(options, StripeOptions) or (options is None and api == "stripe-payment-intents"):
        return StripeDialect(options or StripeOptions(), **kw)
    if isinstance(options, PaddleOptions) or (options is None and api == "paddle-transactions"):
        return PaddleDialect(options or PaddleOptions(), **kw)
    return GenericDialect(options if isinstance(options, GenericOptions) else GenericOptions(), **kw)


class ShopSimulator:
    """One simulated shop/billing API; serve it with ``SimServer(sim)`` (or several behind one ``ShopRouter``).

    ``api`` picks the API; ``options`` (the API's ``*Options``) switches conventions where real deployments
    differ; ``token`` is the credential clients must send (default: ``sim.token``, shaped like the API's own);
    ``seed`` makes orders, ``step()`` and random faults reproducible; ``clock`` (timezone-aware) replaces the fake
    clock. Every creation, state change and deletion is appended to ``history`` as a ``SimChange`` whose
    ``from_state``/``to_state`` are the API's raw states. Thread-safe: one lock guards everything."""

    def __init__(
        self,
        api: ShopApi,
        *,
        seed: int = 0,
        token: str | None = None,
        clock: Callable[[], datetime] | None = None,
        options: ShopOptions | None = None,
    ) -> None:
        self.api = api
        self.lock = threading.RLock()
        self.dialect = _dialect(api, options, seed, clock, token)
        self.faults = Faults(rng=random.Random(seed ^ 0x5EED), queue={api: deque()})
        self._requests = 0
        self._bytes = 0

    # Orders -----------------------------------------------------------------------------------------------
    @property
    def history(self) -> list[SimChange]:
        """Every change so far, in order (``seq`` 1, 2, ...). The list is live: read it under ``lock``."""
        return self.dialect.core.history

    @property
    def transitions(self) -> Mapping[str, tuple[str, ...]]:
        """Each raw state and the states an order in it may move to."""
        return self.dialect.transitions

    @property
    def actions(self) -> tuple[str, ...]:
        """The API's extra actions for ``act`` (WooCommerce: trash, untrash; Shopify: fulfil, close)."""
        return tuple(self.dialect.actions)

    def create(self, n: int = 1, *, state: str | None = None) -> list[str]:
        """Create ``n`` orders in ``state`` (default: the API's first state); return their keys."""
        state = self.dialect.initial if state is None else state
        self._check_state(state)
        with self.lock:
            return [self.dialect.create(state).key for _ in range(n)]

    def move(self, key: str, state: str, *, force: bool = False) -> None:
        """Move an order to ``state``: a legal move of the API's lifecycle, or any known state with ``force``."""
        self._check_state(state)
        with self.lock:
            row = self._row(key)
            if not force and state not in self.dialect.moves(row):
                legal = list(self.dialect.moves(row))
                raise ValueError(f"{self.api} order {key} cannot move {row.state} -> {state}; legal: {legal}")
            self.dialect.move(row, state)

    def delete(self, key: str) -> None:
        """Delete an order for good, where the API can (``ValueError`` says why not)."""
        with self.lock:
            row = self._row(key)
            reason = self.dialect.why_undeletable(row)
            if reason:
                raise ValueError(reason)
            self.dialect.remove(row)

    def act(self, key: str, action: str) -> None:
        """Apply one of the API's extra ``actions`` to an order (``trash`` records a state change to "trash")."""
        with self.lock:
            run = self.dialect.actions.get(action)
            if run is None:
                raise ValueError(f"{self.api} has no action {action!r}; expected one of {list(self.actions)}")
            run(self._row(key))

    def touch(self, key: str) -> None:
        """Edit an order without changing its state (its update time moves; nothing enters ``history``)."""
        with self.lock:
            self.dialect.touch(self._row(key))

    def step(self, n: int = 1) -> list[SimChange]:
        """Make ``n`` random legal changes (creations, moves, deletions the API allows); return those recorded."""
        with self.lock:
            start = len(self.history)
            for _ in range(n):
                self.dialect.step_once()
            return self.history[start:]

    def order_keys(self) -> list[str]:
        """Every order's key, oldest first."""
        with self.lock:
            return [row.key for row in self.dialect.core.store.rows()]

    def orders(self, base_url: str = "") -> list[dict[str, Any]]:
        """A copy of every order as the API returns it, oldest first (``base_url`` fills links in bodies)."""
        with self.lock:
            return [self.dialect.render(row, base_url) for row in self.dialect.core.store.rows()]

    def order(self, key: str, base_url: str = "") -> dict[str, Any] | None:
        """A copy of one order as the API returns it, or None when it does not exist."""
        with self.lock:
            row = self.dialect.core.store.get(key)
            return None if row is None else self.dialect.render(row, base_url)

    def state_of(self, key: str) -> str | None:
        """The raw state of one order, or None when it does not exist."""
        with self.lock:
            row = self.dialect.core.store.get(key)
            return None if row is None else row.state

    # Credentials, faults, statistics ----------------------------------------------------------------------
    @property
    def token(self) -> str:
        """The credential a client must send (WooCommerce: ``consumer_key:consumer_secret``)."""
        return self.dialect.token

    @property
    def list_path(self) -> str:
        """The path of the list endpoint (Shopify: with the newest served API version)."""
        return self.dialect.list_path

    def auth_headers(self) -> dict[str, str]:
        """Headers a well-behaved client sends to authenticate (empty for query-parameter auth)."""
        return self.dialect.auth_headers()

    def auth_params(self) -> dict[str, str]:
        """Query parameters a well-behaved client sends to authenticate (only for query-parameter auth)."""
        return self.dialect.auth_params()

    def revoke(self) -> None:
        """Reject the token (with the API's real answer to a revoked credential) until ``restore``."""
        with self.lock:
            self.dialect.revoked = True

    def restore(self) -> None:
        """Accept the token again."""
        with self.lock:
            self.dialect.revoked = False

    def inject(self, kind: str, count: int = 1) -> None:
        """Give the next ``count`` requests the fault ``kind`` (one of ``FAULT_KINDS``); served before random ones."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        with self.lock:
            self.faults.queue[self.api].extend([kind] * count)

    def requests(self) -> int:
        """How many requests were answered since the last ``reset_stats``."""
        return self._requests

    def bytes(self) -> int:
        """How many response-body bytes were sent since the last ``reset_stats``."""
        return self._bytes

    def reset_stats(self) -> None:
        """Zero the request and byte counters."""
        with self.lock:
            self._requests = self._bytes = 0

    # HTTP -------------------------------------------------------------------------------------------------
    @property
    def prefixes(self) -> tuple[str, ...]:
        """The path prefixes this API answers (for ``ShopRouter``)."""
        return self.dialect.prefixes

    def handle_request(self, method: str, target: str, headers: Mapping[str, str], base_url: str) -> SimResponse:
        """Answer one request (``headers`` with lower-case names; ``base_url`` like ``http://host:port``)."""
        parts = urlsplit(target)
        params = parse_qs(parts.query, keep_blank_values=True)
        req = Request(method, parts.path, parts.query, params, headers, base_url)
        if not any(parts.path.startswith(prefix) for prefix in self.prefixes):
            return SimResponse(404, b"Not Found", "text/plain")
        with self.lock:
            self._requests += 1
            fault = self.faults.pick(self.api)
            replaced = fault in REPLACING_FAULTS
            resp = self.dialect.fault(str(fault), req) if replaced else self._answer(req, fault)
            resp = self.dialect.decorate(resp, req)
            self._bytes += len(resp.body)
            return resp

    def _answer(self, req: Request, fault: str | None) -> SimResponse:
        if req.method != "GET":
            return self.dialect.not_found(req)
        refused = self.dialect.gate(req)
        if refused is not None:
            return refused
        if fault == "drift_insert":  # new orders push rows down
            for _ in range(self.dialect.core.aux.randint(1, 3)):
                self.dialect.create(self.dialect.birth())
        elif fault == "drift_delete":  # an order leaving the listing pulls rows up
            self.dialect.drift_out(req)
        resp = self.dialect.answer(req)
        if fault == "slow":
            resp.delay = self.faults.slow_seconds
        elif fault == "truncated":
            resp.body = resp.body[: len(resp.body) // 2]
        return resp

    # Internals --------------------------------------------------------------------------------------------
    def _check_state(self, state: str) -> None:
        if state not in self.dialect.transitions:
            known = sorted(self.dialect.transitions)
            raise ValueError(f"unknown {self.api} state {state!r}; expected one of {known}")

    def _row(self, key: str) -> Row:
        row = self.dialect.core.store.get(key)
        if row is None:
            raise KeyError(f"no {self.api} order {key!r}")
        return row

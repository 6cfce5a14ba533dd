"""What one simulated API is: its orders' lifecycle and how it answers HTTP (the base every API module extends)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final

import orjson

from orderwatch.simulator.shops.core import ShopCore
from orderwatch.simulator.shops.links import Pairs, query_pairs
from orderwatch.simulator.shops.store import Row
from orderwatch.simulator.wire import SimResponse

HTML: Final = "text/html"
NGINX_502: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    b"\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_STATUS: Final = {"http500": 500, "http502": 502, "http503": 503}


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as a dialect sees it: ``params`` from the query (blanks kept), lower-case header names."""

    method: str
    path: str
    query: str
    params: Mapping[str, list[str]]
    headers: Mapping[str, str]
    base_url: str

    def first(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None when absent."""
        values = self.params.get(name)
        return values[0] if values else None

    @property
    def pairs(self) -> Pairs:
        """The query as ordered ``(name, value)`` pairs."""
        return query_pairs(self.query)


def json_response(status: int, body: Any, headers: list[tuple[str, str]] | None = None, **kw: str) -> SimResponse:
    """A JSON answer (``content_type`` may be passed to say ``; charset=...``)."""
    return SimResponse(status, orjson.dumps(body), kw.get("content_type", "application/json"), headers or [])


class Dialect(abc.ABC):
    """One API: the states and legal moves of its orders, their bodies, and its HTTP answers.

    Subclasses set the class attributes and implement the abstract methods; every method runs with the
    simulator's lock held. ``gate`` does the API's checks (credentials, parameters) in the API's own order;
    ``answer`` then builds the real answer."""

    api: ClassVar[str]
    default_token: ClassVar[str]
    prefixes: tuple[str, ...]  # the path prefixes it answers
    whole_seconds: bool = True  # timestamps in whole seconds (else microseconds)
    transitions: Mapping[str, tuple[str, ...]]
    births: tuple[tuple[str, float], ...]  # states step() creates orders in, with weights
    initial: str  # the state create() uses by default
    delete_share: float = 0.0  # share of step()s that delete an order when delete_candidates() offers one

    def __init__(self, *, seed: int, clock: Callable[[], datetime] | None, token: str | None) -> None:
        self.core = ShopCore(self.api, self.transitions, seed=seed, clock=clock, whole=self.whole_seconds)
        self.token = token or self.default_token
        self.revoked = False
        self.actions: dict[str, Callable[[Row], None]] = {}

    # Orders ------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, state: str) -> Row:
        """A new order in ``state`` (not stored yet)."""

    @abc.abstractmethod
    def on_state(self, row: Row, before: str) -> None:
        """Update the fields that go with ``row``'s new state (timestamps, amounts, ...)."""

    def moves(self, row: Row) -> tuple[str, ...]:
        """The states ``row`` may move to next."""
        return self.transitions[row.state]

    def step_moves(self, row: Row) -> tuple[str, ...]:
        """The moves step() may make from ``row`` (default: every legal move)."""
        return self.moves(row)

    def why_undeletable(self, row: Row) -> str | None:
        """Why the API cannot delete ``row``, or None when it can."""
        return f"{self.api} has no way to delete an order"

    def delete_candidates(self) -> list[str]:
        """Keys step() may delete (empty when the API never deletes)."""
        return []

    def side_change(self) -> bool:
        """Make one change that is not a state change (step() calls this now and then); False when none."""
        return False

    def render(self, row: Row, base_url: str) -> dict[str, Any]:
        """The order as the API returns it (a deep copy)."""
        del base_url
        body: dict[str, Any] = orjson.loads(orjson.dumps(row.body))
        return body

    def create(self, state: str) -> Row:
        """Build, store and record a new order in ``state``."""
        row = self.build(state)
        self.core.insert(row)
        return row

    def move(self, row: Row, state: str) -> None:
        """Move ``row`` to ``state`` and update what goes with it."""
        row.updated = self.core.change_time(row)
        before = self.core.move(row, state)
        self.on_state(row, before)

    def remove(self, row: Row) -> None:
        """Delete ``row`` for good and record it."""
        self.core.remove(row)

    def touch(self, row: Row) -> None:
        """Record an edit that is not a state change: only the update time moves."""
        row.updated = self.core.change_time(row)
        self.on_touch(row)
        self.core.store.touch()

    def on_touch(self, row: Row) -> None:
        """Write ``row.updated`` into the body after an edit (default: the body shows no update time)."""
        del row

    def step_once(self) -> None:
        """One random legal change: delete (rarely), move a state, edit, or create."""
        core, rng = self.core, self.core.rng
        roll = rng.random()
        doomed = self.delete_candidates()
        if doomed and roll < self.delete_share:
            row = core.store.get(rng.choice(doomed))
            if row is not None:
                self.remove(row)
                return
        if 0.30 <= roll < 0.35 and self.side_change():
            return
        movable = [s for s, nxt in self.transitions.items() if nxt and core.store.keys_in(s)]
        if roll >= 0.35 and movable:
            state = rng.choices(movable, weights=[len(core.store.keys_in(s)) for s in movable])[0]
            row = core.store.get(rng.choice(core.store.keys_in(state)))
            if row is not None and (moves := self.step_moves(row)):
                self.move(row, rng.choice(moves))
                return
        self.create(self.birth())

    def birth(self) -> str:
        """A state for a new order made by step() or drift."""
        states, weights = zip(*self.births, strict=True)
        return str(self.core.rng.choices(states, weights=weights)[0])

    # HTTP --------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def gate(self, req: Request) -> SimResponse | None:
        """The API's checks before answering (credentials, parameters), in its own order; None to go on."""

    @abc.abstractmethod
    def answer(self, req: Request) -> SimResponse:
        """The answer to a GET that passed ``gate``."""

    @abc.abstractmethod
    def unauthorized(self, req: Request) -> SimResponse:
        """The API's answer to a revoked or wrong credential."""

    @abc.abstractmethod
    def rate_limited(self) -> SimResponse:
        """The API's 429 body (``fault`` adds ``Retry-After`` when the API has none of its own)."""

    @abc.abstractmethod
    def server_error(self, status: int) -> SimResponse:
        """The API's own 5xx body."""

    @abc.abstractmethod
    def error_body(self) -> SimResponse:
        """An HTTP 200 that is not the list (what a broken server of this API really sends)."""

    @abc.abstractmethod
    def not_found(self, req: Request) -> SimResponse:
        """The API's answer for a path or method it has no route for (the simulator only reads)."""

    @property
    @abc.abstractmethod
    def list_path(self) -> str:
        """The path of the list endpoint."""

    def auth_headers(self) -> dict[str, str]:
        """Headers a well-behaved client sends to authenticate."""
        return {"authorization": f"Bearer {self.token}"}

    def auth_params(self) -> dict[str, str]:
        """Query parameters a well-behaved client sends to authenticate."""
        return {}

    def drift_out(self, req: Request) -> None:
        """Make the first order of the requested listing leave it (rows are pulled up), where the API allows."""
        del req

    def decorate(self, resp: SimResponse, req: Request) -> SimResponse:
        """Add the headers this API sends with every answer."""
        del req
        return resp

    def fault(self, kind: str, req: Request) -> SimResponse:
        """The answer for a fault that replaces the real one."""
        if kind == "html":
            return SimResponse(502, NGINX_502, HTML)
        if kind == "auth":
            return self.unauthorized(req)
        if kind == "rate_limit":
            resp = self.rate_limited()
            if not any(name.lower() == "retry-after" for name, _ in resp.headers):
                resp.headers.append(("Retry-After", "1"))
            return resp
        if kind == "error_body":
            return self.error_body()
        return self.server_error(_STATUS[kind])

"""Which endpoint a request path names, under the server's ``Conventions``, and what each endpoint answers.

``resolve`` maps a path to a ``Route`` (list, summary, detail), or to the answer a framework gives before any view
runs (Django's APPEND_SLASH redirect, an unrouted 404): those come before authentication, as in the real servers.
``answer`` serves a route from the orders of its API. The caller holds the simulator's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import orjson

from orderwatch.simulator import wire
from orderwatch.simulator.conventions import Conventions
from orderwatch.simulator.queries import AceQuery, LskyQuery, parse_ace_query, parse_lsky_query
from orderwatch.simulator.tables import OrderTable, Rows, select_ace, select_lsky
from orderwatch.simulator.wire import Params, SimResponse

Api = Literal["ace", "lsky"]
ACE_ROOT: Final = "/api/v1/orders"
LSKY_ROOT: Final = "/api/v2/user/orders"


@dataclass(frozen=True, slots=True)
class Route:
    """An endpoint of one API: its list, the Ace summary, or the detail of ``key``."""

    api: Api
    kind: Literal["list", "summary", "detail"]
    key: str = ""


@dataclass(frozen=True, slots=True)
class Context:
    """What answering one request needs besides the orders.

    ``origin`` is ``http://host:port``; ``url`` the absolute URL asked (for DRF's links); ``unix`` reads the
    clock (only when an answer carries the time); ``choices`` the valid values of each multi-valued Ace filter
    (for ``MultipleChoiceFilter``).
    """

    conventions: Conventions
    origin: str
    url: str
    max_page_size: int
    unix: Callable[[], int]
    choices: Mapping[str, Collection[str]]


def api_of(path: str) -> Api | None:
    """The API a path belongs to, or None."""
    if path.startswith(ACE_ROOT):
        return "ace"
    if path.startswith(LSKY_ROOT):
        return "lsky"
    return None


def resolve(api: Api, path: str, query: str, conventions: Conventions) -> Route | SimResponse:
    """The route ``path`` names (``query``: the raw query string, kept by redirects)."""
    if api == "lsky":
        rest = path[len(LSKY_ROOT) :].strip("/")
        if not rest:
            return Route(api, "list")
        if conventions.lsky_detail == "none":
            return wire.unrouted(api, path)
        return Route(api, "detail", rest)
    rest = path[len(ACE_ROOT) :]
    name = rest.strip("/")
    if conventions.ace_detail == "slash" and not path.endswith("/"):  # APPEND_SLASH: every route has one
        return wire.moved_permanently(f"{path}/?{query}" if query else f"{path}/")
    if not name:
        return Route(api, "list")
    if name == "summary":
        return Route(api, "summary")
    if conventions.ace_detail == "noslash" and rest.endswith("/"):
        return wire.unrouted(api, path)
    return Route(api, "detail", name)


def answer(table: OrderTable, route: Route, params: Params, ctx: Context) -> SimResponse:
    """The answer of ``route`` (a GET) from ``table``, the orders of its API."""
    if route.kind == "list":
        return _list(table, route.api, params, ctx)
    if route.kind == "summary":
        return SimResponse(200, _ace_summary(table))
    return _detail(table, route, ctx)


def ace_listing(table: OrderTable, params: Params, ctx: Context) -> tuple[AceQuery, Rows, bool] | SimResponse:
    """The query an Ace list request makes, its rows and the reverse flag; or the 400 its parameters earn."""
    query = parse_ace_query(params, ctx.conventions, ctx.choices)
    if isinstance(query, SimResponse):
        return query
    return (query, *select_ace(table, query))


def lsky_listing(table: OrderTable, params: Params, ctx: Context) -> tuple[LskyQuery, Rows, bool]:
    """The query a Lsky list request makes, its rows and the reverse flag."""
    query = parse_lsky_query(params, ctx.conventions)
    return (query, *select_lsky(table, query))


def _list(table: OrderTable, api: str, params: Params, ctx: Context) -> SimResponse:
    conventions, size = ctx.conventions, ctx.max_page_size
    if api == "ace":
        listed = ace_listing(table, params, ctx)
        if isinstance(listed, SimResponse):
            return listed
        _, rows, reverse = listed
        page = wire.ace_page(rows, reverse=reverse, params=params, max_size=size, conventions=conventions, url=ctx.url)
        return SimResponse(200, page)
    _, rows, reverse = lsky_listing(table, params, ctx)
    path = ctx.origin + LSKY_ROOT
    body = wire.lsky_page(
        rows, reverse=reverse, params=params, path=path, max_size=size, unix=ctx.unix(), conventions=conventions
    )
    return SimResponse(200, body)


def _detail(table: OrderTable, route: Route, ctx: Context) -> SimResponse:
    conventions = ctx.conventions
    if route.api == "ace" and conventions.ace_detail == "none":
        order = None
    elif (conventions.ace_detail if route.api == "ace" else conventions.lsky_detail) == "ignores_id":
        order = table.newest()
    else:
        order = table.by_key.get(route.key)
    if order is None:
        return wire.not_found(route.api, ctx.unix())
    return SimResponse(200, orjson.dumps(order if route.api == "ace" else wire.lsky_wrap(order, ctx.unix())))


def _ace_summary(table: OrderTable) -> bytes:
    def build() -> bytes:
        spent = sum(o["price"] for o in table.orders if o["state"] in {"Paid", "Finished"})
        counts = {s: len(b.items) for s, b in table.buckets.items()}
        total = len(table.orders)
        return orjson.dumps({"total_count": total, "total_spent": round(spent, 2), "state_counts": counts})

    return table.cached("summary", build)

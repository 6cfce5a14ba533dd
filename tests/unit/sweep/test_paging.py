"""Full-list paging through httpx's MockTransport: counts checked not trusted, the end proven, order and redirects."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from orderwatch.errors import HTTPStatusError, SourceError
from orderwatch.sources import Request, Source, acedata, make_source
from orderwatch.sweep import http, paging

Count = Callable[[int], Any]


def orders(n: int) -> list[dict[str, Any]]:
    """``n`` Ace orders, oldest first, one second apart."""
    return [
        {"id": f"o{i:04d}", "state": "Paid", "created_at": f"2024-06-15T10:{i // 60 % 60:02d}:{i % 60:02d}.000000Z"}
        for i in range(n)
    ]


def ace_api(rows: list[dict[str, Any]], *, count: Count = lambda n: n, clamp: int = 100, sort: bool = True) -> Any:
    """An Ace list endpoint over ``rows``: newest first (unless ``sort`` is False), limit clamped, ``count`` as
    ``count(real)`` says; records the offsets asked."""
    asked: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.url.query.decode())
        limit, offset = min(int(query["limit"][0]), clamp), int(query["offset"][0])
        asked.append(offset)
        listed = list(reversed(rows)) if sort else sorted(rows, key=lambda o: str(o["id"])[::-1])
        body = {"count": count(len(rows)), "items": listed[offset : offset + limit]}
        return httpx.Response(200, json=body)

    handler.asked = asked  # type: ignore[attr-defined]
    return handler


def source(page_size: int = 50, **extra: Any) -> Source:
    """An Ace source on a made-up host (the transport never leaves the process)."""
    return make_source("ace", "acedata", "https://api.example.com", token="t0k3n-secret", page_size=page_size, **extra)


async def collect(handler: Any, src: Source | None = None) -> Any:
    """A full sweep through ``handler``."""
    async with http.clients(httpx.MockTransport(handler)) as pool:
        src = src or source()
        return await paging.collect(pool.for_source(src), src)


@pytest.mark.anyio
async def test_an_honest_list_is_swept_in_full_and_proves_absence() -> None:
    """Every order once, the count matching, newest first: the sweep is consistent and the counts proven."""
    obs = await collect(ace_api(orders(230)))
    assert len(obs.orders) == 230 and obs.consistent and obs.counts_ok and obs.sorted_ok


@pytest.mark.anyio
async def test_a_silent_cap_on_the_page_size_is_measured_and_an_honest_server_shows_none() -> None:
    """A server giving 20 of the 50 asked (more following) is seen capping pages at 20; one that gives what is
    asked, or a list shorter than a page, shows no cap."""
    capped = await collect(ace_api(orders(230), clamp=20))
    assert (capped.distinct, capped.consistent, capped.served_page) == (230, True, 20)
    assert (await collect(ace_api(orders(230)))).served_page is None
    assert (await collect(ace_api(orders(30)))).served_page is None


@pytest.mark.anyio
async def test_a_count_below_the_orders_listed_is_caught_by_the_page_after_it() -> None:
    """count = a third of the truth: the page after the claimed end has orders, so paging goes on to an empty
    page; every order is seen, the counts are no evidence, and absence rests on the empty page alone."""
    obs = await collect(ace_api(orders(150), count=lambda n: n // 3))
    assert len(obs.orders) == 150 and obs.counts_ok is False and obs.consistent
    assert "counts are no evidence" in (obs.reason or "")


@pytest.mark.parametrize("lie", [0, -1, None, "many"])
@pytest.mark.anyio
async def test_zero_negative_or_missing_counts_never_stop_a_sweep_early(lie: Any) -> None:
    """A count of 0, -1, null or a word: every order is still read, down to an empty page."""
    obs = await collect(ace_api(orders(120), count=lambda n: lie))
    assert len(obs.orders) == 120 and obs.counts_ok in (False, None) and obs.consistent


@pytest.mark.anyio
async def test_a_huge_count_plans_no_more_than_max_pages() -> None:
    """count = 10**12 with max_pages = 20: at most 20 pages (and a few in flight) are asked, none built past it."""
    handler = ace_api(orders(120), count=lambda n: 10**12)
    obs = await collect(handler, source(max_pages=20))
    assert len(obs.orders) == 120 and len(handler.asked) <= 20 + 8
    assert not obs.consistent  # an empty page was reached, but the count says a trillion: nothing proven


@pytest.mark.anyio
async def test_a_list_out_of_order_is_noticed() -> None:
    """A server ignoring ordering=-created_at: the sweep says its pages were not newest first."""
    obs = await collect(ace_api(orders(90), sort=False))
    assert len(obs.orders) == 90 and obs.sorted_ok is False


@pytest.mark.anyio
async def test_same_origin_redirects_are_followed_and_others_refused() -> None:
    """A 301 to the same origin is followed (with the token); one to another host is an error naming it, and
    the token is never sent there."""
    seen_hosts: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_hosts.append((request.url.host, request.headers.get("authorization")))
        if request.url.path == "/api/v1/orders/o1":
            return httpx.Response(301, headers={"location": "/api/v1/orders/o1/"})
        if request.url.path == "/api/v1/orders/o1/":
            return httpx.Response(200, json={"id": "o1", "state": "Paid"})
        return httpx.Response(302, headers={"location": "https://evil.example.net/steal"})

    src = source()
    async with http.clients(httpx.MockTransport(handler)) as pool:
        client = pool.for_source(src)
        body = await http.send(client, src, acedata.detail_fallback(src, "o1"), http.Tally())
        assert json.loads(body)["id"] == "o1"
        with pytest.raises(HTTPStatusError) as caught:
            await http.send(client, src, Request("/x"), http.Tally())
    assert "evil.example.net" in str(caught.value) and "not followed" in str(caught.value)
    assert all(host == "api.example.com" for host, _ in seen_hosts)


@pytest.mark.anyio
async def test_a_token_quoted_back_in_an_error_never_reaches_the_message() -> None:
    """A 401 body echoing the token, percent-encoded or base64'd: the error message holds none of its forms."""

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].split()[1]
        return httpx.Response(401, json={"detail": f"bad token {token} / dDBrM24tc2VjcmV0 / t0k3n%2Dsecret"})

    with pytest.raises(SourceError) as caught:
        await collect(handler)
    text = str(caught.value)
    assert "t0k3n-secret" not in text and "dDBrM24tc2VjcmV0" not in text and "***" in text

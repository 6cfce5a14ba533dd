"""Quirky servers that are not our simulator: variable page sizes, wrong counts, missing meta, no count at all."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from orderwatch.sources import Source, make_source
from orderwatch.store import Store
from orderwatch.sweep import http
from orderwatch.sweep.poller import Poller

Answer = Callable[[dict[str, str]], dict[str, Any]]


class QuirkyServer:
    """A loopback HTTP server answering every GET with ``answer(query)`` as JSON; counts requests."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                body = orjson.dumps(outer.answer(query))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> QuirkyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


ORDERS = [{"id": f"o{i:03}", "state": "Pending", "price": i} for i in range(53)]


def ace_page(orders: list[dict[str, Any]], query: dict[str, str], size: Callable[[int], int], count: int | None) -> Any:
    offset = int(query.get("offset", 0))
    items = orders[offset : offset + min(int(query.get("limit", 20)), size(offset))]
    body: dict[str, Any] = {"items": items}
    if count is not None:
        body["count"] = count
    return body


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "q.db")
    yield s
    s.close()


async def poll(store: Store, src: Source, **kw: Any) -> Any:
    async with http.clients() as pool:
        return await Poller(store, pool).poll(src, **kw)


@pytest.mark.anyio
async def test_short_pages_in_the_middle_of_a_planned_sweep_lose_no_order(store: Store) -> None:
    """A server whose page sizes vary (10, then 7, then 10…) still yields every order, and a consistent sweep."""
    with QuirkyServer(lambda q: ace_page(ORDERS, q, lambda off: 7 if off % 20 == 10 else 10, len(ORDERS))) as srv:
        src = make_source(name="q", kind="acedata", base_url=srv.url, token="t", page_size=10)
        result = await poll(store, src, full=True)
    assert result.ok
    assert result.consistent
    assert set(store.snapshot("q")) == {o["id"] for o in ORDERS}


@pytest.mark.anyio
async def test_an_api_without_a_count_is_paged_until_an_empty_page(store: Store) -> None:
    """With no `count`, paging goes on (page by page, by items received) until an empty page."""
    with QuirkyServer(lambda q: ace_page(ORDERS, q, lambda off: 8, None)) as srv:
        src = make_source(name="q", kind="acedata", base_url=srv.url, token="t", page_size=50)
        result = await poll(store, src, full=True)
        assert srv.requests == 8  # 7 pages of up to 8 orders, then the empty one
    assert result.ok
    assert len(store.snapshot("q")) == len(ORDERS)


@pytest.mark.anyio
async def test_a_count_that_never_adds_up_is_learned_and_the_empty_page_proves_absence(store: Store) -> None:
    """If `count` always claims more orders than exist, the first sweep that reaches an empty page is the baseline
    and the counts are learned to be no evidence; later sweeps prove absence by the empty page, so a deleted order
    is reported vanished."""
    orders = [dict(o) for o in ORDERS]
    with QuirkyServer(lambda q: ace_page(orders, q, lambda off: 10, len(orders) + 5)) as srv:
        src = make_source(name="q", kind="acedata", base_url=srv.url, token="t", page_size=10)
        assert (await poll(store, src, full=True)).baseline
        assert store.capabilities("q")["counts"][0] is False
        orders[0]["state"] = "Paid"
        del orders[5]
        result = await poll(store, src, full=True)
    events = sorted((e.order_id, e.kind, e.to_state) for e in result.events)
    assert events == [("o000", "transition", "Paid"), ("o005", "vanished", None)]


def lsky_page(orders: list[dict[str, Any]], query: dict[str, str], *, with_meta: bool) -> Any:
    page, per = int(query.get("page", 1)), min(int(query.get("per_page", 20)), 6)
    rows = orders[(page - 1) * per : page * per]
    more = page * per < len(orders)
    data: dict[str, Any] = {"data": rows, "links": {"next": f"/x?page={page + 1}" if more else None}}
    if with_meta:
        last = -(-len(orders) // per)
        data["meta"] = {
            "current_page": page,
            "last_page": last,
            "total": len(orders),
            "per_page": per,
            "from": (page - 1) * per + 1 if rows else None,
            "to": None,
        }
    return {"status": "success", "message": "successful", "data": data}


@pytest.mark.anyio
@pytest.mark.parametrize("with_meta", [True, False])
async def test_lsky_pages_by_meta_or_by_next_links_alone(store: Store, with_meta: bool) -> None:
    """A clamped Laravel paginator is read to the end by meta.last_page, or by links.next when meta is missing."""
    orders = [{"trade_no": f"t{i:03}", "status": "unpaid"} for i in range(20)]
    with QuirkyServer(lambda q: lsky_page(orders, q, with_meta=with_meta)) as srv:
        src = make_source(name="l", kind="lsky", base_url=srv.url, token="t", page_size=100)
        result = await poll(store, src, full=True)
    assert result.ok
    assert set(store.snapshot("l")) == {o["trade_no"] for o in orders}
    assert result.baseline  # complete; without totals, nothing contradicts it, so it is consistent too

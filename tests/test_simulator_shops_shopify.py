"""The simulator speaks Shopify's REST Admin orders API: Link/page_info paging, filters, versions, auth, count."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from orderwatch.simulator.shops import ShopifyOptions, ShopSimulator
from tests.shops_support import serve, shopify_all

V = "2025-07"
LIST = f"/admin/api/{V}/orders.json"
Order = dict[str, Any]


@pytest.fixture
def shop() -> ShopSimulator:
    """A seeded Shopify store whose orders went through payments, refunds, fulfilment, archiving and cancels."""
    sim = ShopSimulator("shopify", seed=8)
    sim.create(25, state="paid")
    sim.create(5)
    sim.step(80)
    return sim


@pytest.fixture
def http(shop: ShopSimulator) -> Iterator[httpx.Client]:
    """A client for ``shop`` served on loopback."""
    with serve(shop) as client:
        yield client


def ids(rows: list[Order]) -> list[str]:
    """The order ids of a listing, as strings."""
    return [str(o["id"]) for o in rows]


def newest_first(sim: ShopSimulator, keep: Callable[[Order], bool] = lambda o: True) -> list[str]:
    """Keys in Shopify's default order (created_at desc, then id desc) among orders ``keep`` accepts."""
    orders = [o for o in sim.orders() if keep(o)]
    return [str(o["id"]) for o in sorted(orders, key=lambda o: (o["created_at"], o["id"]), reverse=True)]


def is_open(order: Order) -> bool:
    """Neither archived nor cancelled."""
    return order["closed_at"] is None and order["cancelled_at"] is None


def test_list_shape_headers_and_default_open_status(shop: ShopSimulator, http: httpx.Client) -> None:
    """The body is {"orders": [...]}; without status only open orders come, newest first, 50 at most."""
    resp = http.get(LIST, headers=shop.auth_headers())
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    assert resp.headers["x-shopify-api-version"] == V and resp.headers["x-shopify-shop-api-call-limit"] == "1/40"
    body = resp.json()
    assert set(body) == {"orders"}
    assert ids(body["orders"]) == newest_first(shop, is_open)[:50]
    assert len(newest_first(shop, is_open)) < len(shop.order_keys())
    order = body["orders"][0]
    assert order["admin_graphql_api_id"] == f"gid://shopify/Order/{order['id']}"
    assert order["name"] == f"#{order['order_number']}" and order["financial_status"] in shop.transitions
    assert datetime.fromisoformat(order["created_at"]).utcoffset() == timedelta(hours=-4)


def test_link_paging_lists_every_order_once_and_walks_back(shop: ShopSimulator, http: httpx.Client) -> None:
    """Following rel="next" with status=any yields every order once; rel="previous" walks the same pages back."""
    rows = shopify_all(http, shop, status="any", limit=7)
    assert ids(rows) == newest_first(shop) and len(rows) == len(shop.order_keys())
    pages, resp = [], http.get(LIST, params={"status": "any", "limit": 7}, headers=shop.auth_headers())
    assert "previous" not in resp.links
    while True:
        pages.append(ids(resp.json()["orders"]))
        if "next" not in resp.links:
            break
        resp = http.get(resp.links["next"]["url"], headers=shop.auth_headers())
    back = [pages[-1]]
    while "previous" in resp.links:
        resp = http.get(resp.links["previous"]["url"], headers=shop.auth_headers())
        back.append(ids(resp.json()["orders"]))
    assert back[::-1] == pages
    query = parse_qs(
        urlsplit(http.get(LIST, params={"limit": 3}, headers=shop.auth_headers()).links["next"]["url"]).query
    )
    assert set(query) == {"limit", "page_info"} and query["limit"] == ["3"]


def test_paging_by_cursor_survives_new_orders(shop: ShopSimulator, http: httpx.Client) -> None:
    """Orders created between two pages do not push rows into the next page: no repeats, no gaps."""
    first = http.get(LIST, params={"status": "any", "limit": 10}, headers=shop.auth_headers())
    shop.create(4)
    rest = http.get(first.links["next"]["url"], headers=shop.auth_headers()).json()["orders"]
    assert ids(first.json()["orders"]) + ids(rest) == newest_first(shop)[4:24]


def test_page_info_allows_only_limit_and_fields(shop: ShopSimulator, http: httpx.Client) -> None:
    """Other parameters beside page_info are each a 400 naming them; a forged page_info is a 400 too."""
    url = httpx.URL(
        http.get(LIST, params={"status": "any", "limit": 5}, headers=shop.auth_headers()).links["next"]["url"]
    )
    extra = url.copy_merge_params({"status": "any", "updated_at_min": "2024-01-01T00:00:00Z"})
    resp = http.get(extra, headers=shop.auth_headers())
    assert resp.status_code == 400
    doc = "See https://shopify.dev/api/usage/pagination-rest for more information."
    assert resp.json() == {
        "errors": {
            "status": f"status cannot be passed when page_info is present. {doc}",
            "updated_at_min": f"updated_at_min cannot be passed when page_info is present. {doc}",
        }
    }
    assert http.get(url.copy_merge_params({"fields": "id"}), headers=shop.auth_headers()).status_code == 200
    forged = http.get(LIST, params={"page_info": "not-a-cursor"}, headers=shop.auth_headers())
    assert forged.status_code == 400 and forged.json() == {"errors": {"page_info": "Invalid value."}}


def test_limit_defaults_to_50_and_is_capped_at_250() -> None:
    """Without limit 50 orders come; limit=1000 gives 250 (the documented maximum)."""
    sim = ShopSimulator("shopify", seed=1)
    sim.create(300)
    with serve(sim) as http:
        assert len(http.get(LIST, headers=sim.auth_headers()).json()["orders"]) == 50
        assert len(http.get(LIST, params={"limit": 1000}, headers=sim.auth_headers()).json()["orders"]) == 250


def test_fields_limits_keys_and_stays_in_the_links(shop: ShopSimulator, http: httpx.Client) -> None:
    """fields=id,financial_status returns only those keys, on every page."""
    rows = shopify_all(http, shop, status="any", limit=6, fields="id,financial_status")
    assert all(set(o) == {"id", "financial_status"} for o in rows) and len(rows) == len(shop.order_keys())


def test_financial_status_and_updated_at_min_filters(shop: ShopSimulator, http: httpx.Client) -> None:
    """financial_status selects that state (unpaid: authorized and partially paid); updated_at_min is inclusive."""
    orders = shop.orders()
    paid = shopify_all(http, shop, status="any", financial_status="paid", limit=4)
    assert set(ids(paid)) == {str(o["id"]) for o in orders if o["financial_status"] == "paid"} != set()
    unpaid = shopify_all(http, shop, status="any", financial_status="unpaid")
    expected = {str(o["id"]) for o in orders if o["financial_status"] in {"authorized", "partially_paid"}}
    assert set(ids(unpaid)) == expected
    pivot = sorted(o["updated_at"] for o in orders)[len(orders) // 2]
    recent = shopify_all(http, shop, status="any", updated_at_min=pivot, limit=5)
    assert set(ids(recent)) == {str(o["id"]) for o in orders if o["updated_at"] >= pivot}


def test_status_closed_and_cancelled_and_count(shop: ShopSimulator, http: httpx.Client) -> None:
    """status=closed lists archived orders, status=cancelled the cancelled ones; count.json counts the same filters."""
    orders = shop.orders()
    closed = shopify_all(http, shop, status="closed")
    cancelled = shopify_all(http, shop, status="cancelled")
    assert set(ids(closed)) == {str(o["id"]) for o in orders if o["closed_at"]} != set()
    assert set(ids(cancelled)) == {str(o["id"]) for o in orders if o["cancelled_at"]} != set()
    count = http.get(f"/admin/api/{V}/orders/count.json", params={"status": "closed"}, headers=shop.auth_headers())
    assert count.json() == {"count": len(closed)}
    everything = http.get(f"/admin/api/{V}/orders/count.json", params={"status": "any"}, headers=shop.auth_headers())
    assert everything.json() == {"count": len(orders)}


def test_missing_wrong_and_revoked_tokens_get_shopifys_401(shop: ShopSimulator, http: httpx.Client) -> None:
    """No token, a wrong one and a revoked one all get 401 {"errors": "[API] Invalid API key or access token ..."}."""
    expected = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    for headers in ({}, {"x-shopify-access-token": "shpat_wrong"}):
        resp = http.get(LIST, headers=headers)
        assert (resp.status_code, resp.json()) == (401, expected)
    shop.revoke()
    assert http.get(LIST, headers=shop.auth_headers()).status_code == 401
    shop.restore()
    assert http.get(LIST, headers=shop.auth_headers()).status_code == 200


def test_api_versions_fall_forward_and_unknown_ones_are_404(shop: ShopSimulator, http: httpx.Client) -> None:
    """An old version is served as the oldest supported (and says so); a future or malformed one is 404."""
    old = http.get("/admin/api/2022-01/orders.json", headers=shop.auth_headers())
    assert old.status_code == 200 and old.headers["x-shopify-api-version"] == "2024-10"
    assert http.get("/admin/api/unstable/orders.json", headers=shop.auth_headers()).status_code == 200
    for version in ("2031-01", "2024-13", "latest"):
        resp = http.get(f"/admin/api/{version}/orders.json", headers=shop.auth_headers())
        assert (resp.status_code, resp.json()) == (404, {"errors": "Not Found"})


def test_versions_before_2019_07_page_by_number_without_links() -> None:
    """With a supported window reaching 2019-04, that version pages with page= and sends no Link header."""
    sim = ShopSimulator("shopify", seed=2, options=ShopifyOptions(oldest_version="2019-04"))
    sim.create(9)
    legacy = "/admin/api/2019-04/orders.json"
    with serve(sim) as http:
        first = http.get(legacy, params={"limit": 4}, headers=sim.auth_headers())
        third = http.get(legacy, params={"limit": 4, "page": 3}, headers=sim.auth_headers())
    assert "link" not in first.headers and len(first.json()["orders"]) == 4
    assert ids(third.json()["orders"]) == newest_first(sim)[8:]


def test_without_read_all_orders_only_the_last_60_days_show() -> None:
    """A shop without the read_all_orders scope lists only orders created in the last 60 days."""
    now = [datetime(2024, 1, 1, tzinfo=UTC)]
    sim = ShopSimulator("shopify", seed=3, clock=lambda: now[0], options=ShopifyOptions(read_all_orders=False))
    old = sim.create(3)
    now[0] += timedelta(days=90)
    recent = sim.create(2)
    with serve(sim) as http:
        rows = shopify_all(http, sim, status="any")
    assert set(ids(rows)) == set(recent) and not set(old) & set(ids(rows))


def test_detail_endpoint_and_404(shop: ShopSimulator, http: httpx.Client) -> None:
    """orders/{id}.json is {"order": ...}; an unknown id is {"errors": "Not Found"}."""
    key = shop.order_keys()[3]
    assert http.get(f"/admin/api/{V}/orders/{key}.json", headers=shop.auth_headers()).json() == {
        "order": shop.order(key)
    }
    missing = http.get(f"/admin/api/{V}/orders/1.json", headers=shop.auth_headers())
    assert (missing.status_code, missing.json()) == (404, {"errors": "Not Found"})


def test_cancel_archive_and_delete(shop: ShopSimulator) -> None:
    """Voiding cancels and archives an order; only cancelled or archived orders can be deleted."""
    [key] = shop.create(1, state="authorized")
    shop.move(key, "voided")
    order = shop.order(key)
    assert order is not None and order["cancelled_at"] and order["closed_at"] and order["cancel_reason"] == "customer"
    [live] = shop.create(1, state="paid")
    with pytest.raises(ValueError, match="only cancelled or archived"):
        shop.delete(live)
    shop.act(live, "close")
    shop.delete(live)
    shop.delete(key)
    assert [c.kind for c in shop.history[-2:]] == ["deleted", "deleted"]
    assert shop.order(live) is None

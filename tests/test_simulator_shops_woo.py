"""The simulator speaks WooCommerce's REST API v3 orders over real HTTP: shape, auth, paging, validation, filters."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from orderwatch.simulator.shops import WOO_STATUSES, ShopSimulator, WooOptions
from tests.shops_support import serve, woo_all

LIST = "/wp-json/wc/v3/orders"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")


@pytest.fixture
def woo() -> ShopSimulator:
    """A seeded WooCommerce shop with orders in many statuses, some trashed."""
    sim = ShopSimulator("woocommerce", seed=5)
    sim.create(20)
    sim.step(60)
    return sim


@pytest.fixture
def http(woo: ShopSimulator) -> Iterator[httpx.Client]:
    """A client for ``woo`` served on loopback."""
    with serve(woo) as client:
        yield client


def newest_first(sim: ShopSimulator, *, trash: bool = False) -> list[str]:
    """The keys WooCommerce lists by default: newest first (ties by id), trash only when asked."""
    orders = [o for o in sim.orders() if (o["status"] == "trash") == trash]
    return [str(o["id"]) for o in sorted(orders, key=lambda o: (o["date_created_gmt"], o["id"]), reverse=True)]


def test_list_is_a_bare_array_with_totals_and_links(woo: ShopSimulator, http: httpx.Client) -> None:
    """The list is a JSON array of v3 orders with X-WP-Total, X-WP-TotalPages and a Link rel="next"."""
    resp = http.get(LIST, params={"per_page": 5}, headers=woo.auth_headers())
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json; charset=UTF-8"
    body = resp.json()
    listed = len(newest_first(woo))
    assert isinstance(body, list) and len(body) == 5
    assert resp.headers["x-wp-total"] == str(listed)
    assert resp.headers["x-wp-totalpages"] == str(-(-listed // 5))
    assert resp.links["next"]["url"].endswith(f"{LIST}?per_page=5&page=2")
    assert "prev" not in resp.links
    for order in body:
        assert {"id", "status", "currency", "total", "billing", "line_items", "date_created_gmt"} <= set(order)
        assert STAMP.match(order["date_created_gmt"]) and STAMP.match(order["date_modified_gmt"])
        assert order["status"] in WOO_STATUSES and order["number"] == str(order["id"])
        assert re.fullmatch(r"\d+\.\d\d", order["total"]) and "@" in order["billing"]["email"]
        assert order["_links"]["self"][0]["href"].endswith(f"{LIST}/{order['id']}")


def test_following_next_links_lists_every_order_once_newest_first(woo: ShopSimulator, http: httpx.Client) -> None:
    """Paging by Link rel="next" yields every non-trashed order exactly once, newest first, ties broken by id."""
    rows = woo_all(http, woo, per_page=7)
    assert [str(o["id"]) for o in rows] == newest_first(woo)
    assert len({o["id"] for o in rows}) == len(rows) > 20
    trashed = woo_all(http, woo, status="trash", per_page=3)
    assert [str(o["id"]) for o in trashed] == newest_first(woo, trash=True) != []


def test_links_repeat_the_query_and_prev_is_clamped_past_the_end(woo: ShopSimulator, http: httpx.Client) -> None:
    """Links keep every query parameter with page replaced; a page past the end is [] whose prev is the last page."""
    params: dict[str, str | int] = {"status": "processing,completed", "orderby": "id", "order": "asc", "per_page": 2}
    params["page"] = 2
    resp = http.get(LIST, params=params, headers=woo.auth_headers())
    assert resp.links["prev"]["url"].endswith("?status=processing%2Ccompleted&orderby=id&order=asc&per_page=2&page=1")
    assert "page=3" in resp.links["next"]["url"]
    pages = int(resp.headers["x-wp-totalpages"])
    past = http.get(LIST, params={**params, "page": pages + 3}, headers=woo.auth_headers())
    assert past.status_code == 200 and past.json() == []
    assert past.headers["x-wp-total"] == resp.headers["x-wp-total"]
    assert past.links["prev"]["url"].endswith(f"page={pages}") and "next" not in past.links


def test_out_of_range_and_malformed_arguments_are_one_rest_invalid_param(
    woo: ShopSimulator, http: httpx.Client
) -> None:
    """per_page 101, page 0, a junk integer, an unknown status and a bad date are WordPress's 400s, all at once."""
    resp = http.get(LIST, params={"per_page": 101}, headers=woo.auth_headers())
    assert resp.status_code == 400
    assert resp.json() == {
        "code": "rest_invalid_param",
        "message": "Invalid parameter(s): per_page",
        "data": {
            "status": 400,
            "params": {"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"},
            "details": {
                "per_page": {
                    "code": "rest_out_of_bounds",
                    "message": "per_page must be between 1 (inclusive) and 100 (inclusive)",
                    "data": None,
                }
            },
        },
    }
    bad: dict[str, str | int] = {"page": 0, "per_page": "ten", "status": "processing,shipped"}
    bad["modified_after"] = "yesterday"
    body = http.get(LIST, params=bad, headers=woo.auth_headers()).json()
    assert body["message"] == "Invalid parameter(s): page, per_page, modified_after, status"
    assert body["data"]["params"]["page"] == "page must be greater than or equal to 1"
    assert body["data"]["details"]["per_page"]["code"] == "rest_invalid_type"
    assert body["data"]["params"]["modified_after"] == "Invalid date."
    assert body["data"]["params"]["status"].startswith("status[1] is not one of any, trash, pending, processing")
    assert body["data"]["params"]["status"].endswith(", and checkout-draft.")
    order = http.get(LIST, params={"order": "up"}, headers=woo.auth_headers()).json()
    assert order["data"]["params"]["order"] == "order is not one of asc and desc."


def test_a_plugin_may_raise_the_page_size_limit() -> None:
    """With max_per_page=500 a per_page of 300 is accepted (a plugin raised WordPress's 100)."""
    sim = ShopSimulator("woocommerce", seed=1, options=WooOptions(max_per_page=500))
    sim.create(120)
    with serve(sim) as http:
        resp = http.get(LIST, params={"per_page": 300}, headers=sim.auth_headers())
    assert resp.status_code == 200 and len(resp.json()) == 120


def test_credentials_in_the_header_or_the_query_and_the_real_refusals(woo: ShopSimulator, http: httpx.Client) -> None:
    """Basic auth or consumer_key/consumer_secret work; none or an unknown key is cannot_view; a bad secret says so."""
    key, secret = woo.token.split(":")
    assert http.get(LIST, params={"consumer_key": key, "consumer_secret": secret}).status_code == 200
    missing = http.get(LIST)
    assert missing.status_code == 401
    assert missing.json() == {
        "code": "woocommerce_rest_cannot_view",
        "message": "Sorry, you cannot list resources.",
        "data": {"status": 401},
    }
    stranger = http.get(LIST, auth=("ck_unknown", secret))
    assert stranger.status_code == 401 and stranger.json()["code"] == "woocommerce_rest_cannot_view"
    wrong = http.get(LIST, auth=(key, "cs_wrong"))
    assert wrong.status_code == 401 and wrong.json()["message"] == "Consumer secret is invalid."
    assert wrong.json()["code"] == "woocommerce_rest_authentication_error"
    assert wrong.headers["www-authenticate"].startswith('Basic realm="WooCommerce API.')
    assert secret not in wrong.text


def test_a_revoked_key_is_no_user_until_restored(woo: ShopSimulator, http: httpx.Client) -> None:
    """revoke() makes the key unknown (WooCommerce deletes revoked keys): 401 cannot_view until restore()."""
    woo.revoke()
    resp = http.get(LIST, headers=woo.auth_headers())
    assert resp.status_code == 401 and resp.json()["code"] == "woocommerce_rest_cannot_view"
    woo.restore()
    assert http.get(LIST, headers=woo.auth_headers()).status_code == 200


def test_bad_arguments_are_checked_before_missing_credentials(http: httpx.Client) -> None:
    """Like WordPress, argument validation answers before the permission check: per_page=0 without auth is a 400."""
    assert http.get(LIST, params={"per_page": 0}).status_code == 400


def test_status_filter_takes_a_comma_list_or_repeated_brackets(woo: ShopSimulator, http: httpx.Client) -> None:
    """status=a,b and status[]=a&status[]=b select the same orders; "any" (the default) hides only the trash."""
    wanted = {"processing", "on-hold"}
    expected = {str(o["id"]) for o in woo.orders() if o["status"] in wanted}
    comma = woo_all(http, woo, status="processing,on-hold", per_page=4)
    brackets = woo_all(http, woo, **{"status[]": ["processing", "on-hold"]}, per_page=4)
    assert {str(o["id"]) for o in comma} == {str(o["id"]) for o in brackets} == expected != set()
    both = woo_all(http, woo, status="trash,any", per_page=50)
    assert {str(o["id"]) for o in both} == set(newest_first(woo))


def test_modified_after_is_exclusive_and_dates_read_in_the_sites_clock() -> None:
    """modified_after keeps orders changed strictly later; local times need dates_are_gmt to be read as UTC."""
    sim = ShopSimulator("woocommerce", seed=2, options=WooOptions(utc_offset_hours=2))
    keys = sim.create(6)
    order = sim.order(keys[2])
    assert order is not None
    gmt, local = order["date_modified_gmt"], order["date_modified"]
    assert datetime.fromisoformat(local) - datetime.fromisoformat(gmt) == timedelta(hours=2)
    with serve(sim) as http:
        later = woo_all(http, sim, modified_after=local)
        as_gmt = woo_all(http, sim, modified_after=gmt, dates_are_gmt="true")
        zoned = woo_all(http, sim, modified_after=f"{gmt}Z")
        before = woo_all(http, sim, before=gmt, dates_are_gmt="true")
    assert {str(o["id"]) for o in later} == {str(o["id"]) for o in as_gmt} == {str(o["id"]) for o in zoned}
    assert {str(o["id"]) for o in later} == set(keys[3:])
    assert {str(o["id"]) for o in before} == set(keys[:2])


def test_orderby_and_order_sort_the_listing(woo: ShopSimulator, http: httpx.Client) -> None:
    """orderby=id&order=asc sorts by id; orderby=modified sorts by last change."""
    by_id = woo_all(http, woo, orderby="id", order="asc", per_page=9)
    assert [o["id"] for o in by_id] == sorted(o["id"] for o in by_id)
    modified = woo_all(http, woo, orderby="modified", per_page=9)
    stamps = [(o["date_modified_gmt"], o["id"]) for o in modified]
    assert stamps == sorted(stamps, reverse=True)


def test_a_plugin_that_ignores_orderby_always_answers_newest_first() -> None:
    """With honor_orderby=False, orderby/order are accepted but the listing stays date DESC."""
    sim = ShopSimulator("woocommerce", seed=3, options=WooOptions(honor_orderby=False))
    sim.create(12)
    with serve(sim) as http:
        rows = woo_all(http, sim, orderby="id", order="asc", per_page=5)
    assert [str(o["id"]) for o in rows] == newest_first(sim)


def test_offset_takes_priority_over_page(woo: ShopSimulator, http: httpx.Client) -> None:
    """offset=3 skips three orders whatever page says."""
    rows = http.get(LIST, params={"offset": 3, "per_page": 4, "page": 5}, headers=woo.auth_headers()).json()
    assert [str(o["id"]) for o in rows] == newest_first(woo)[3:7]


def test_detail_endpoint_and_its_errors(woo: ShopSimulator, http: httpx.Client) -> None:
    """GET /orders/{id} is the listed order (trashed ones too); unknown ids, other routes and no auth are refused."""
    key = newest_first(woo)[0]
    base = str(http.base_url).rstrip("/")
    assert http.get(f"{LIST}/{key}", headers=woo.auth_headers()).json() == woo.order(key, base)
    trashed = newest_first(woo, trash=True)[0]
    assert http.get(f"{LIST}/{trashed}", headers=woo.auth_headers()).json()["status"] == "trash"
    missing = http.get(f"{LIST}/99999999", headers=woo.auth_headers())
    assert missing.status_code == 404
    assert missing.json()["code"] == "woocommerce_rest_shop_order_invalid_id"
    assert missing.json()["message"] == "Invalid ID." and missing.json()["data"] == {"status": 404}
    assert http.get(f"{LIST}/abc", headers=woo.auth_headers()).json()["code"] == "rest_no_route"
    anonymous = http.get(f"{LIST}/{key}")
    assert anonymous.status_code == 401 and anonymous.json()["message"] == "Sorry, you cannot view this resource."


def test_trash_untrash_and_delete_are_recorded_and_seen(woo: ShopSimulator, http: httpx.Client) -> None:
    """Trashing is a state change to "trash", untrash restores the status, delete removes the order for good."""
    key = newest_first(woo)[0]
    status = woo.state_of(key)
    mark = len(woo.history)
    woo.act(key, "trash")
    assert key not in {str(o["id"]) for o in woo_all(http, woo, per_page=50)}
    woo.act(key, "untrash")
    woo.delete(key)
    got = [(c.kind, c.from_state, c.to_state) for c in woo.history[mark:]]
    assert got == [("state", status, "trash"), ("state", "trash", status), ("deleted", status, None)]
    assert http.get(f"{LIST}/{key}", headers=woo.auth_headers()).status_code == 404
    with pytest.raises(ValueError, match="not in the trash"):
        woo.act(newest_first(woo)[0], "untrash")


def test_status_changes_fill_the_fields_that_go_with_them() -> None:
    """Paying sets date_paid; completing sets date_completed; refunding adds a refund; needs_payment follows."""
    sim = ShopSimulator("woocommerce", seed=4)
    [key] = sim.create(1)
    before = sim.order(key)
    assert before is not None and before["needs_payment"] and before["date_paid"] is None
    sim.move(key, "processing")
    sim.move(key, "completed")
    sim.move(key, "refunded")
    after = sim.order(key)
    assert after is not None and not after["needs_payment"]
    assert after["date_paid_gmt"] and after["date_completed_gmt"]
    assert after["date_modified_gmt"] > before["date_modified_gmt"]
    assert after["refunds"][0]["total"] == f"-{after['total']}"
    with pytest.raises(ValueError, match="cannot move refunded -> pending"):
        sim.move(key, "pending")


def test_basic_header_is_what_auth_headers_sends(woo: ShopSimulator) -> None:
    """auth_headers() is HTTP Basic with consumer key and secret."""
    header = woo.auth_headers()["authorization"]
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == woo.token

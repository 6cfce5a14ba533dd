"""The configurable JSON API: every paging style, body layout, credential style and filter a generic client uses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from orderwatch.simulator.shops import GenericOptions, ShopSimulator
from orderwatch.simulator.shops.dotted import get_path
from tests.shops_support import serve


def items_of(body: Any, opts: GenericOptions) -> list[dict[str, Any]]:
    """The orders in one answer."""
    found = body if opts.items == "" else get_path(body, opts.items)
    assert isinstance(found, list)
    return found


def generic_all(http: httpx.Client, sim: ShopSimulator, opts: GenericOptions, **params: Any) -> list[dict[str, Any]]:
    """A generic client: page in the configured style until the API says there is no more."""
    auth = {**sim.auth_params(), **params}
    rows: list[dict[str, Any]] = []
    number = opts.first_page
    resp = http.get(opts.path, params=auth, headers=sim.auth_headers())
    for _ in range(1000):
        assert resp.status_code == 200, resp.text
        body = resp.json()
        page = items_of(body, opts)
        rows.extend(page)
        more = get_path(body, opts.has_more) if opts.has_more else bool(page)
        if opts.paging == "none" or not page or not more:
            return rows
        if opts.paging == "link":
            if "next" not in resp.links:
                return rows
            resp = http.get(resp.links["next"]["url"], headers=sim.auth_headers())
            continue
        if opts.paging == "offset":
            step = {opts.offset_param: len(rows)}
        elif opts.paging == "page":
            number += 1
            step = {opts.page_param: number}
        elif opts.cursor == "last_key":
            step = {opts.cursor_param: get_path(page[-1], opts.key)}
        else:
            token = get_path(body, opts.cursor)
            if token is None:
                return rows
            step = {opts.cursor_param: token}
        resp = http.get(opts.path, params={**auth, **step}, headers=sim.auth_headers())
    raise AssertionError("the listing never ended")


def keys(rows: list[dict[str, Any]], opts: GenericOptions) -> list[str]:
    """The keys of some orders, as strings."""
    return [str(get_path(o, opts.key)) for o in rows]


LAYOUTS = {
    "offset, bare list": GenericOptions(paging="offset", items="", size_param="limit"),
    "page, total in body": GenericOptions(paging="page", items="data", total="meta.total", first_page=0),
    "page, total header": GenericOptions(paging="page", items="results", total="header:X-Total-Count"),
    "cursor, last key": GenericOptions(paging="cursor", cursor_param="starting_after", has_more="has_more"),
    "cursor, body token": GenericOptions(paging="cursor", items="result.orders", cursor="paging.next_cursor"),
    "link": GenericOptions(paging="link", items="", key_style="uuid"),
    "none": GenericOptions(paging="none", items="orders", total="count"),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_paging_style_reaches_every_order_once(name: str) -> None:
    """Each paging style and body layout, paged by a generic client, yields every order exactly once, newest first."""
    opts = LAYOUTS[name]
    sim = ShopSimulator("generic", seed=3, options=opts)
    sim.create(23)
    sim.step(30)
    with serve(sim) as http:
        rows = generic_all(http, sim, opts, **{opts.size_param: 4})
        first = http.get(opts.path, params={opts.size_param: 4}, headers=sim.auth_headers())
    assert keys(rows, opts) == sim.order_keys()[::-1]
    if opts.total and opts.total.startswith("header:"):
        assert first.headers[opts.total.removeprefix("header:")] == str(len(sim.order_keys()))
    elif opts.total:
        assert get_path(first.json(), opts.total) == len(sim.order_keys())
    if opts.paging == "link":
        assert first.links["next"]["url"].startswith("http://") and "cursor=" in first.links["next"]["url"]


def test_cursor_paging_neither_repeats_nor_skips_while_orders_come_and_go() -> None:
    """With a key cursor, orders created or deleted between pages do not shift the rest of the listing."""
    opts = GenericOptions(paging="cursor", items="data")
    sim = ShopSimulator("generic", seed=4, options=opts)
    sim.create(12)
    with serve(sim) as http:
        first = items_of(http.get(opts.path, params={"per_page": 5}, headers=sim.auth_headers()).json(), opts)
        sim.create(3)
        last_key = str(first[-1]["id"])
        sim.delete(last_key)  # the cursor's own order is gone: its key still works
        rest = generic_all(http, sim, opts, per_page=5, cursor=last_key)
    assert keys(first, opts)[:4] + keys(rest, opts) == [
        k for k in sim.order_keys()[::-1] if k not in sim.order_keys()[-3:]
    ]


def test_offset_paging_repeats_a_row_when_an_order_arrives() -> None:
    """Offset paging is SQL OFFSET: a new order between two pages pushes a row onto the next page again."""
    opts = GenericOptions(paging="offset", items="data")
    sim = ShopSimulator("generic", seed=5, options=opts)
    sim.create(10)
    with serve(sim) as http:
        first = items_of(http.get(opts.path, params={"per_page": 5}, headers=sim.auth_headers()).json(), opts)
        sim.create(1)
        second = items_of(
            http.get(opts.path, params={"per_page": 5, "offset": 5}, headers=sim.auth_headers()).json(), opts
        )
    assert second[0] == first[-1]


def test_nested_field_paths_and_timestamp_formats() -> None:
    """Key, state, created and updated live at dotted paths; unix time_format writes integers."""
    opts = GenericOptions(
        key="order.ref", state="order.state.code", created="times.created", updated="times.changed", time_format="unix"
    )
    sim = ShopSimulator("generic", seed=6, options=opts)
    [key] = sim.create(1)
    sim.move(key, "paid")
    with serve(sim) as http:
        [order] = items_of(http.get(opts.path, headers=sim.auth_headers()).json(), opts)
        detail = http.get(f"/api/orders/{key}", headers=sim.auth_headers()).json()
    assert order == detail == sim.order(key)
    assert str(order["order"]["ref"]) == key and order["order"]["state"]["code"] == "paid"
    assert isinstance(order["times"]["created"], int) and order["times"]["changed"] >= order["times"]["created"]


@pytest.mark.parametrize(
    ("auth", "good", "bad"),
    [
        ("bearer", {"headers": {"authorization": "Bearer generic-token-0123456789abcdef"}}, {"headers": {}}),
        ("basic", {"auth": ("orderwatch", "generic-secret")}, {"auth": ("orderwatch", "nope")}),
        (
            "header:X-Api-Key",
            {"headers": {"x-api-key": "generic-token-0123456789abcdef"}},
            {"headers": {"x-api-key": "x"}},
        ),
        ("query:api_key", {"params": {"api_key": "generic-token-0123456789abcdef"}}, {"params": {"api_key": "x"}}),
    ],
)
def test_credential_styles(auth: str, good: dict[str, Any], bad: dict[str, Any]) -> None:
    """Bearer, basic, a named header and a query parameter authenticate; a wrong or revoked credential is a 401."""
    opts = GenericOptions(auth=auth)
    sim = ShopSimulator("generic", seed=7, options=opts)
    sim.create(2)
    with serve(sim) as http:
        assert http.get(opts.path, **good).status_code == 200
        refused = http.get(opts.path, **bad)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert http.get(opts.path, headers=sim.auth_headers(), params=sim.auth_params()).status_code == 200
        sim.revoke()
        revoked = http.get(opts.path, **good)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "token_revoked"


def test_state_filter_and_updated_since() -> None:
    """state_param keeps the listed raw states; updated_since_param keeps orders updated at or after a time."""
    opts = GenericOptions(state_param="status", updated_since_param="updated_since", paging="none")
    sim = ShopSimulator("generic", seed=8, options=opts)
    sim.create(15)
    sim.step(40)
    orders = sim.orders()
    pivot = sorted(o["updated_at"] for o in orders)[7]
    with serve(sim) as http:
        paid = generic_all(http, sim, opts, status="paid,shipped")
        recent = generic_all(http, sim, opts, updated_since=pivot)
        bad = http.get(opts.path, params={"updated_since": "last week"}, headers=sim.auth_headers())
    assert {o["id"] for o in paid} == {o["id"] for o in orders if o["status"] in {"paid", "shipped"}} != set()
    assert {o["id"] for o in recent} == {o["id"] for o in orders if o["updated_at"] >= pivot}
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "updated_since"


def test_page_size_is_clamped_or_refused_and_bad_numbers_are_400s() -> None:
    """Above max_size the size is clamped (default) or a 400 (oversize="reject"); junk page numbers are 400s."""
    clamp = GenericOptions(default_size=5, max_size=10)
    reject = GenericOptions(default_size=5, max_size=10, oversize="reject")
    for opts in (clamp, reject):
        sim = ShopSimulator("generic", seed=9, options=opts)
        sim.create(30)
        with serve(sim) as http:
            big = http.get(opts.path, params={"per_page": 50}, headers=sim.auth_headers())
            junk = http.get(opts.path, params={"page": "first"}, headers=sim.auth_headers())
        if opts.oversize == "clamp":
            assert len(big.json()["data"]) == 10
        else:
            assert big.status_code == 400 and big.json()["error"] == {
                "code": "invalid_parameter",
                "message": "per_page must be at most 10",
                "param": "per_page",
            }
        assert junk.status_code == 400 and junk.json()["error"]["param"] == "page"


def test_order_param_flips_the_listing() -> None:
    """order_param=asc lists oldest first; a value other than asc/desc is a 400."""
    opts = GenericOptions(order_param="order", paging="none")
    sim = ShopSimulator("generic", seed=10, options=opts)
    sim.create(6)
    with serve(sim) as http:
        asc = generic_all(http, sim, opts, order="asc")
        assert http.get(opts.path, params={"order": "up"}, headers=sim.auth_headers()).status_code == 400
    assert keys(asc, opts) == sim.order_keys()


def test_inconsistent_options_are_refused() -> None:
    """Options that cannot work (a body field when the body is the list, an unknown auth style) raise ValueError."""
    with pytest.raises(ValueError, match="cannot be written"):
        GenericOptions(items="", total="meta.total")
    with pytest.raises(ValueError, match="auth"):
        GenericOptions(auth="oauth2")
    with pytest.raises(ValueError, match="not listed in transitions"):
        GenericOptions(births=(("shipped", 1.0), ("lost", 1.0)), transitions={"shipped": ()})

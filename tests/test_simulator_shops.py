"""What every simulated shop API shares: the history, legal random steps, faults, statistics, routing, threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, get_args

import anyio
import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderwatch.simulator import SimServer, Simulator, run_clock
from orderwatch.simulator.shops import (
    GenericOptions,
    PaddleOptions,
    ShopApi,
    ShopRouter,
    ShopSimulator,
    StripeOptions,
    WooOptions,
)
from orderwatch.simulator.shops.dotted import get_path
from tests.shops_support import serve, stripe_all, woo_all

APIS: list[ShopApi] = list(get_args(ShopApi))
REFUSED = {"paddle-transactions": 403}  # Paddle's own status for a bad key; the others answer 401
DELETERS = {"woocommerce", "shopify", "generic"}


def made(api: ShopApi, seed: int = 1) -> ShopSimulator:
    """A seeded simulator of ``api`` with a few orders moved around."""
    sim = ShopSimulator(api, seed=seed)
    sim.create(8)
    sim.step(25)
    return sim


def listing(http: httpx.Client, sim: ShopSimulator, **kw: Any) -> httpx.Response:
    """The list endpoint, asked the way a correct client asks."""
    return http.get(sim.list_path, params=sim.auth_params(), headers=sim.auth_headers(), **kw)


def is_list_answer(sim: ShopSimulator, resp: httpx.Response) -> bool:
    """Whether ``resp`` is a JSON list answer of the API (not an error in disguise)."""
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return False
    items = {
        "woocommerce": body,
        "shopify": get_path(body, "orders"),
        "stripe-payment-intents": get_path(body, "data") if get_path(body, "object") == "list" else None,
        "paddle-transactions": get_path(body, "data") if get_path(body, "meta.pagination") else None,
        "generic": get_path(body, "data"),
    }[sim.api]
    return isinstance(items, list)


@pytest.fixture(params=APIS)
def sim(request: pytest.FixtureRequest) -> ShopSimulator:
    """One simulator per API."""
    return made(request.param)


@pytest.fixture
def http(sim: ShopSimulator) -> Iterator[httpx.Client]:
    """A client for ``sim`` served on loopback."""
    with serve(sim) as client:
        yield client


# History and lifecycle ---------------------------------------------------------------------------------------
def test_history_records_creations_moves_and_deletions(sim: ShopSimulator) -> None:
    """create, move and delete append SimChanges with the API's raw states and consecutive seq numbers."""
    mark = len(sim.history)
    [key] = sim.create(1)
    first = sim.state_of(key)
    assert first is not None
    target = sim.transitions[first][0]
    sim.move(key, target)
    expected: list[tuple[str, str, str, str | None, str | None]] = [
        (sim.api, key, "created", None, first),
        (sim.api, key, "state", first, target),
    ]
    if sim.api in DELETERS:
        if sim.api == "shopify":
            sim.act(key, "close")
        sim.delete(key)
        expected.append((sim.api, key, "deleted", target, None))
        assert sim.order(key) is None and key not in sim.order_keys()
    got = [(c.api, c.key, c.kind, c.from_state, c.to_state) for c in sim.history[mark:]]
    assert got == expected
    assert [c.seq for c in sim.history] == list(range(1, len(sim.history) + 1))
    stepped = sim.step(10)
    assert sim.history[-len(stepped) :] == stepped


@settings(max_examples=15, deadline=None)
@given(api=st.sampled_from(APIS), seed=st.integers(0, 2**32), steps=st.integers(1, 250))
def test_step_only_makes_legal_moves_and_is_reproducible(api: ShopApi, seed: int, steps: int) -> None:
    """Replaying step()'s history follows the lifecycle; only deleting APIs delete; the same seed makes the same run."""
    sim = ShopSimulator(api, seed=seed)
    sim.create(5)
    sim.step(steps)
    seen: dict[str, str] = {}
    for change in sim.history:
        if change.kind == "created":
            assert change.key not in seen and change.to_state in sim.transitions
            seen[change.key] = str(change.to_state)
        elif change.kind == "state":
            before, after = seen[change.key], str(change.to_state)
            trash = api == "woocommerce" and "trash" in {before, after}
            assert change.from_state == before and (after in sim.transitions[before] or trash)
            seen[change.key] = after
        else:
            assert api in DELETERS and seen.pop(change.key) == change.from_state
    assert {key: sim.state_of(key) for key in sim.order_keys()} == seen
    twin = ShopSimulator(api, seed=seed)
    twin.create(5)
    assert twin.step(steps) == sim.history[5:]


def test_moves_outside_the_lifecycle_are_refused_unless_forced(sim: ShopSimulator) -> None:
    """An illegal move or an unknown state is a ValueError; force=True sets any known state."""
    [key] = sim.create(1)
    first = sim.state_of(key)
    assert first is not None
    illegal = next(s for s in sim.transitions if s not in sim.transitions[first] and s != first)
    with pytest.raises(ValueError, match="cannot move"):
        sim.move(key, illegal)
    with pytest.raises(ValueError, match="unknown"):
        sim.move(key, "teleported")
    sim.move(key, illegal, force=True)
    assert sim.state_of(key) == illegal
    with pytest.raises(KeyError):
        sim.move("no-such-order", illegal)
    with pytest.raises(ValueError, match="no action"):
        sim.act(key, "explode")


def test_stripe_and_paddle_cannot_delete() -> None:
    """PaymentIntents and Paddle transactions are never deleted: delete() says why."""
    keepers: list[ShopApi] = ["stripe-payment-intents", "paddle-transactions"]
    for api in keepers:
        sim = made(api)
        with pytest.raises(ValueError, match="no way to delete"):
            sim.delete(sim.order_keys()[0])


def test_touch_moves_the_update_time_only(sim: ShopSimulator) -> None:
    """touch() changes an order's update time without a state change or a history entry."""
    key = sim.order_keys()[0]
    before, mark = sim.order(key), len(sim.history)
    sim.touch(key)
    after = sim.order(key)
    assert before is not None and after is not None and len(sim.history) == mark
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"updated_at", "date_modified", "date_modified_gmt"} & set(after)  # Stripe shows none


def test_a_clock_drives_creation_times() -> None:
    """With a clock, creation times come from it and never go back even when it does."""
    times = iter([datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)])
    sim = ShopSimulator("woocommerce", seed=1, clock=lambda: next(times))
    sim.create(2)
    assert [o["date_created_gmt"] for o in sim.orders()] == ["2025-03-01T12:00:05"] * 2


def test_wrong_api_or_options_are_refused() -> None:
    """An unknown API name is a ValueError; options for another API are a TypeError."""
    with pytest.raises(ValueError, match="unknown shop API"):
        ShopSimulator("magento")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes WooOptions"):
        ShopSimulator("woocommerce", options=StripeOptions())


# Faults ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        ("http500", 500, "application/json"),
        ("http502", 502, "application/json"),
        ("http503", 503, "application/json"),
        ("html", 502, "text/html"),
        ("rate_limit", 429, "application/json"),
        ("auth", 0, "application/json"),
    ],
)
def test_http_error_faults_answer_in_the_apis_own_form(
    sim: ShopSimulator, http: httpx.Client, kind: str, status: int, content_type: str
) -> None:
    """Each replacing fault answers once with its status in the API's error body; 429 carries Retry-After."""
    sim.inject(kind)
    resp = listing(http, sim)
    assert resp.status_code == (status or REFUSED.get(sim.api, 401))
    assert resp.headers["content-type"].startswith(content_type)
    if content_type == "application/json":
        body = resp.json()
        assert isinstance(body, dict) and {"code", "errors", "error"} & set(body)
    if kind == "rate_limit":
        assert float(resp.headers["retry-after"]) >= 1
    assert listing(http, sim).status_code == 200


def test_truncated_answers_cut_the_json(sim: ShopSimulator, http: httpx.Client) -> None:
    """A truncated answer is HTTP 200 with a consistent Content-Length but half a JSON document."""
    whole = listing(http, sim).content
    sim.inject("truncated")
    resp = listing(http, sim)
    assert resp.status_code == 200 and int(resp.headers["content-length"]) == len(resp.content) < len(whole)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(resp.content)


def test_error_bodies_are_http_200_without_a_list(sim: ShopSimulator, http: httpx.Client) -> None:
    """error_body is an HTTP 200 a careless client would take for a page (PHP notice, bot check, error JSON)."""
    assert is_list_answer(sim, listing(http, sim))
    sim.inject("error_body")
    resp = listing(http, sim)
    assert resp.status_code == 200 and not is_list_answer(sim, resp)


def test_slow_answers_outlast_a_short_timeout(sim: ShopSimulator, http: httpx.Client) -> None:
    """A slow answer comes after slow_seconds: a client with a much shorter timeout gives up."""
    sim.faults.slow_seconds = 2.0
    sim.inject("slow")
    with pytest.raises(httpx.TimeoutException):
        listing(http, sim, timeout=0.1)
    sim.faults.slow_seconds = 0.5
    sim.inject("slow")
    assert sim.handle_request("GET", sim.list_path, sim.auth_headers(), "http://x").delay == 0.5


def test_drift_insert_pushes_woocommerce_pages_down() -> None:
    """New orders arriving between two page requests make WooCommerce's next page repeat rows."""
    woo = made("woocommerce", seed=3)
    with serve(woo) as http:
        first = http.get(woo.list_path, params={"per_page": 5}, headers=woo.auth_headers()).json()
        mark = len(woo.history)
        woo.inject("drift_insert")
        second = http.get(woo.list_path, params={"per_page": 5, "page": 2}, headers=woo.auth_headers()).json()
    added = woo.history[mark:]
    assert 1 <= len(added) <= 3 and all(c.kind == "created" for c in added)
    assert second[0] == first[5 - len(added)]


def test_drift_insert_does_not_disturb_stripe_cursors() -> None:
    """With cursor paging, orders created while a sweep runs never make the rest of it repeat or skip."""
    stripe = made("stripe-payment-intents", seed=4)
    ranked = sorted(stripe.orders(), key=lambda o: (o["created"], stripe.order_keys().index(o["id"])), reverse=True)
    with serve(stripe) as http:
        first = http.get(stripe.list_path, params={"limit": 4}, headers=stripe.auth_headers()).json()["data"]
        stripe.inject("drift_insert", count=3)
        rest = stripe_all(http, stripe, limit=4, starting_after=first[-1]["id"])
    assert [o["id"] for o in first + rest] == [o["id"] for o in ranked]
    assert len(stripe.order_keys()) > len(ranked)


def test_drift_delete_pulls_woocommerce_rows_up() -> None:
    """An order trashed between two pages makes the next WooCommerce page skip a row."""
    woo = made("woocommerce", seed=5)
    with serve(woo) as http:
        everything = woo_all(http, woo, per_page=100)
        woo.inject("drift_delete")
        page2 = http.get(woo.list_path, params={"per_page": 5, "page": 2}, headers=woo.auth_headers()).json()
    [moved] = woo.history[-1:]
    assert (moved.kind, moved.to_state, moved.key) == ("state", "trash", str(everything[0]["id"]))
    assert page2[0] == everything[6]


def test_drift_delete_moves_a_paddle_row_out_of_its_status_filter() -> None:
    """For Paddle, drift_delete moves the first transaction of a status-filtered listing to another status."""
    paddle = made("paddle-transactions", seed=6)
    paddle.create(5, state="ready")
    with serve(paddle) as http:
        paddle.inject("drift_delete")
        resp = http.get(paddle.list_path, params={"status": "ready"}, headers=paddle.auth_headers())
    moved = paddle.history[-1]
    assert moved.kind == "state" and moved.from_state == "ready" and moved.to_state != "ready"
    assert moved.key not in {t["id"] for t in resp.json()["data"]}


def test_injection_is_one_shot_and_validated(sim: ShopSimulator, http: httpx.Client) -> None:
    """inject(count=2) fails exactly the next two requests (detail ones too); unknown kinds are refused."""
    sim.inject("http503", count=2)
    codes = [listing(http, sim).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    with pytest.raises(ValueError, match="unknown fault kind"):
        sim.inject("meteor")


def test_random_faults_follow_rate_and_kinds(sim: ShopSimulator, http: httpx.Client) -> None:
    """At rate 1 every request gets one of the configured kinds; at rate 0 none does."""
    sim.faults.rate, sim.faults.kinds = 1.0, {"http500", "http502"}
    assert {listing(http, sim).status_code for _ in range(12)} == {500, 502}
    sim.faults.rate = 0.0
    assert {listing(http, sim).status_code for _ in range(4)} == {200}


def test_stats_count_requests_and_bytes(sim: ShopSimulator, http: httpx.Client) -> None:
    """requests() and bytes() count answers and body bytes (refusals too); reset_stats() zeroes them."""
    sim.reset_stats()
    sizes = [len(listing(http, sim).content) for _ in range(3)]
    sizes.append(len(http.get(sim.list_path).content))
    assert (sim.requests(), sim.bytes()) == (4, sum(sizes))
    sim.reset_stats()
    assert (sim.requests(), sim.bytes()) == (0, 0)


def test_paths_outside_the_api_are_plain_404s(sim: ShopSimulator, http: httpx.Client) -> None:
    """A path no API prefix covers is a plain-text 404, and is not counted."""
    sim.reset_stats()
    resp = http.get("/elsewhere/orders", headers=sim.auth_headers())
    assert (resp.status_code, resp.text, sim.requests()) == (404, "Not Found", 0)


def test_only_get_is_served(sim: ShopSimulator, http: httpx.Client) -> None:
    """The simulator only reads: other methods get the API's no-route answer."""
    resp = http.post(sim.list_path, headers=sim.auth_headers(), content=b"{}")
    assert resp.status_code == 404 and resp.headers["content-type"].startswith("application/json")


# Serving several APIs ----------------------------------------------------------------------------------------
def test_one_router_serves_every_api_and_the_seed_simulator() -> None:
    """ShopRouter puts all five APIs and the seed simulator behind one port, each answering its own paths."""
    shops = [made(api) for api in APIS]
    seed = Simulator(seed=1)
    seed.add_ace(3)
    router = ShopRouter([*((p, s) for s in shops for p in s.prefixes), ("/api/v1/orders", seed)])
    with SimServer(router) as srv, httpx.Client(base_url=srv.url, timeout=10) as http:
        for shop in shops:
            assert is_list_answer(shop, listing(http, shop)), shop.api
        ace = http.get("/api/v1/orders/", headers={"authorization": "Bearer ace-token"})
        assert ace.json()["count"] == 3
        assert http.get("/nowhere").status_code == 404
    with pytest.raises(ValueError, match="claim the prefixes"):
        ShopRouter.of(made("generic"), made("generic"))


@pytest.mark.anyio
async def test_concurrent_clients_while_orders_change() -> None:
    """Concurrent async requests to every API, while clocks change orders, all get whole JSON answers."""
    shops = [ShopSimulator(api, seed=2) for api in APIS]
    for shop in shops:
        shop.create(30)
    stop = threading.Event()
    clocks = [run_clock(shop, 0.002, stop) for shop in shops]
    codes: list[int] = []

    async def fetch(client: httpx.AsyncClient, shop: ShopSimulator) -> None:
        """One list request; its body must parse."""
        resp = await client.get(shop.list_path, params=shop.auth_params(), headers=shop.auth_headers())
        orjson.loads(resp.content)
        codes.append(resp.status_code)

    try:
        with SimServer(ShopRouter.of(*shops)) as srv:
            async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client, anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(fetch, client, shops[i % len(shops)])
    finally:
        stop.set()
        for clock in clocks:
            clock.join(timeout=10)
    assert codes == [200] * 40 and all(len(shop.history) > 30 for shop in shops)


def test_options_reach_the_served_api() -> None:
    """Options given to ShopSimulator change what is served (a sample per API)."""
    woo = ShopSimulator("woocommerce", options=WooOptions(currency="GBP"))
    woo.create(1)
    paddle = ShopSimulator("paddle-transactions", options=PaddleOptions(currency="EUR"))
    paddle.create(1)
    generic = ShopSimulator("generic", options=GenericOptions(path="/v2/sales", detail_path=None))
    generic.create(1)
    assert woo.orders()[0]["currency_symbol"] == "£"
    assert paddle.orders()[0]["currency_code"] == "EUR"
    with serve(generic) as http:
        assert listing(http, generic).status_code == 200 and generic.list_path == "/v2/sales"

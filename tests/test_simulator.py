"""The simulator speaks both seed APIs over real HTTP on loopback: shapes, auth, paging, filters, faults, history."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderwatch.simulator import TRANSITIONS, Api, SimServer, Simulator, run_clock
from orderwatch.simulator.wire import page_links

ACE = {"authorization": "Bearer ace-token", "accept": "application/json"}
LSKY = {"authorization": "Bearer lsky-token", "accept": "application/json"}
ACE_FIELDS = {
    "id", "user_id", "application_id", "package_id", "amount", "price", "discount", "pay_way", "pay_id", "pay_url",
    "state", "remaining_amount", "applications", "packages", "tags", "metadata", "created_at", "updated_at",
}  # fmt: skip
LSKY_FIELDS = {
    "trade_no", "amount", "snapshot", "product", "pay_method", "status", "paid_at", "canceled_at", "created_at",
    "coupon",
}  # fmt: skip
LSKY_META = {"current_page", "from", "last_page", "links", "path", "per_page", "to", "total"}
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ACE_LIST = "/api/v1/orders/"
LSKY_LIST = "/api/v2/user/orders"


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


@pytest.fixture
def simu() -> Simulator:
    """A seeded simulator (pages clamped to 10) with moved-around orders in both APIs."""
    s = Simulator(seed=7, max_page_size=10)
    s.add_ace(25)
    s.add_lsky(25)
    s.step(40)
    return s


@pytest.fixture
def served(simu: Simulator) -> Iterator[SimServer]:
    """``simu`` on 127.0.0.1."""
    with SimServer(simu) as srv:
        yield srv


@pytest.fixture
def http(served: SimServer) -> Iterator[httpx.Client]:
    """A client for the served simulator (no default headers: each test says what it sends)."""
    with httpx.Client(base_url=served.url, timeout=10) as client:
        yield client


def wait_until(predicate: Callable[[], bool], bound: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``bound`` seconds passed; return whether it held."""
    never, deadline = threading.Event(), time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            return False
        never.wait(0.01)
    return True


def ace_all(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every Ace order, paging by items received."""
    rows: list[dict[str, Any]] = []
    while True:
        body = http.get(ACE_LIST, params={**params, "offset": len(rows)}, headers=ACE).json()
        if not body["items"]:
            return rows
        rows.extend(body["items"])


def lsky_all(http: httpx.Client, q: str) -> list[dict[str, Any]]:
    """Every Lsky order, page by page until there is no next page."""
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        data = http.get(LSKY_LIST, params={"page": page, "q": q}, headers=LSKY).json()["data"]
        rows.extend(data["data"])
        if data["links"]["next"] is None:
            return rows
        page += 1


# Shapes ------------------------------------------------------------------------------------------------------
def test_ace_list_has_the_seed_shape(simu: Simulator, http: httpx.Client) -> None:
    """Ace answers {count, items} whose orders carry exactly the seed's fields, UUID ids and seed timestamps."""
    body = http.get(ACE_LIST, params={"ordering": "-created_at"}, headers=ACE).json()
    assert set(body) == {"count", "items"}
    assert body["count"] == len(simu.orders("ace")) >= 25
    assert len(body["items"]) == 10
    for order in body["items"]:
        assert set(order) == ACE_FIELDS
        assert uuid.UUID(order["id"]).version == 4
        assert STAMP.match(order["created_at"]) and STAMP.match(order["updated_at"])
        assert order["updated_at"] >= order["created_at"]
        assert order["state"] in TRANSITIONS["ace"]
        assert (order["pay_url"] is not None) == (order["state"] == "Pending")


def test_ace_list_key_can_be_results() -> None:
    """With ace_list_key="results" the list comes under the older docs' key."""
    sim = Simulator(ace_list_key="results")
    sim.add_ace(3)
    with SimServer(sim) as srv, httpx.Client(base_url=srv.url) as http:
        body = http.get(ACE_LIST, headers=ACE).json()
    assert set(body) == {"count", "results"}
    assert len(body["results"]) == body["count"] == 3


def test_lsky_list_has_the_seed_shape(simu: Simulator, served: SimServer, http: httpx.Client) -> None:
    """Lsky answers the seed's wrapper, paginator links/meta and order fields; trade_no is local YmdHis+5 digits."""
    body = http.get(LSKY_LIST, params={"q": "sort:latest", "per_page": 5, "page": 2}, headers=LSKY).json()
    assert set(body) == {"status", "message", "data", "time"}
    assert (body["status"], body["message"]) == ("success", "successful")
    assert isinstance(body["time"], int)
    data = body["data"]
    assert set(data) == {"data", "links", "meta"}
    path = served.url + LSKY_LIST
    last = -(-len(simu.orders("lsky")) // 5)
    assert data["links"] == {
        "first": f"{path}?page=1",
        "last": f"{path}?page={last}",
        "prev": f"{path}?page=1",
        "next": f"{path}?page=3",
    }
    meta = data["meta"]
    assert set(meta) == LSKY_META
    assert (meta["current_page"], meta["from"], meta["to"], meta["per_page"]) == (2, 6, 10, 5)
    assert (meta["path"], meta["last_page"], meta["total"]) == (path, last, len(simu.orders("lsky")))
    assert meta["links"][0]["label"] == "« 上一页" and meta["links"][-1]["label"] == "下一页 »"
    assert [link["label"] for link in meta["links"] if link["active"]] == ["2"]
    for order in data["data"]:
        assert set(order) == LSKY_FIELDS
        assert order["created_at"].endswith(".000000Z") and STAMP.match(order["created_at"])
        assert re.fullmatch(r"\d{19}_002", order["trade_no"])
        local = datetime.fromisoformat(order["created_at"]) + timedelta(hours=8)
        assert order["trade_no"].startswith(local.strftime("%Y%m%d%H%M%S"))
        assert set(order["product"]) == {"name", "duration", "price"}
        assert order["status"] in TRANSITIONS["lsky"]


def test_defaults_are_twenty_rows_first_page() -> None:
    """Without limit/per_page/page both APIs answer the first 20 rows."""
    sim = Simulator(seed=3)
    sim.add_ace(30)
    sim.add_lsky(30)
    with SimServer(sim) as srv, httpx.Client(base_url=srv.url) as http:
        assert len(http.get(ACE_LIST, headers=ACE).json()["items"]) == 20
        assert len(http.get(ACE_LIST, params={"limit": "junk", "offset": "-3"}, headers=ACE).json()["items"]) == 20
        data = http.get(LSKY_LIST, params={"page": "", "per_page": "", "q": ""}, headers=LSKY).json()["data"]
    assert len(data["data"]) == 20
    assert (data["meta"]["current_page"], data["meta"]["per_page"], data["meta"]["last_page"]) == (1, 20, 2)


def test_lsky_page_links_window_like_laravel() -> None:
    """meta.links shows prev, a window of pages with '...' gaps around the current page, and next."""
    labels = [link["label"] for link in page_links("/p", 50, 100)]
    assert labels == ["« 上一页", "1", "2", "...", *map(str, range(47, 54)), "...", "99", "100", "下一页 »"]
    assert [link["label"] for link in page_links("/p", 1, 1)] == ["« 上一页", "1", "下一页 »"]
    assert page_links("/p", 1, 1)[0]["url"] is None and page_links("/p", 1, 1)[-1]["url"] is None


# Auth --------------------------------------------------------------------------------------------------------
def test_ace_auth_failures_use_both_error_forms(http: httpx.Client) -> None:
    """Ace: no bearer gives {"detail"}; a wrong token gives {"error": {"code": "invalid_token"}, "trace_id"}."""
    missing = http.get(ACE_LIST)
    assert missing.status_code == 401 and set(missing.json()) == {"detail"}
    wrong = http.get(ACE_LIST, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_token" and wrong.json()["trace_id"]
    assert "nope" not in wrong.text


def test_lsky_auth_failure_is_json_only_when_asked(http: httpx.Client) -> None:
    """Lsky: a wrong token is 401 {"message": "Unauthenticated."}, or an HTML page without Accept: JSON."""
    as_json = http.get(LSKY_LIST, headers={"authorization": "Bearer nope", "accept": "application/json"})
    assert as_json.status_code == 401 and as_json.json() == {"message": "Unauthenticated."}
    as_html = http.get(LSKY_LIST, headers={"authorization": "Bearer nope"})
    assert as_html.status_code == 401 and as_html.headers["content-type"].startswith("text/html")
    assert as_html.text.startswith("<!DOCTYPE html>")


def test_revoked_token_is_rejected_until_restored(simu: Simulator, http: httpx.Client) -> None:
    """revoke() makes one API reject its own token (the real 401) until restore(); the other API is unaffected."""
    simu.revoke("lsky")
    assert http.get(LSKY_LIST, headers=LSKY).status_code == 401
    assert http.get(f"{LSKY_LIST}/{simu.orders('lsky')[0]['trade_no']}", headers=LSKY).status_code == 401
    assert http.get(ACE_LIST, headers=ACE).status_code == 200
    simu.revoke("ace")
    assert http.get(ACE_LIST, headers=ACE).json()["error"]["code"] == "invalid_token"
    simu.restore("lsky")
    simu.restore("ace")
    assert http.get(LSKY_LIST, headers=LSKY).status_code == 200
    assert http.get(ACE_LIST, headers=ACE).status_code == 200


def test_only_get_is_allowed(http: httpx.Client) -> None:
    """Anything but GET is a 405 in the API's error form."""
    assert http.post(ACE_LIST, headers=ACE, content=b"{}").json() == {"detail": 'Method "POST" not allowed.'}
    assert http.delete(LSKY_LIST, headers=LSKY).status_code == 405


# Paging, clamping, sorting -----------------------------------------------------------------------------------
def test_page_sizes_are_clamped_silently(http: httpx.Client) -> None:
    """limit and per_page above max_page_size are clamped without an error; meta.per_page says so."""
    body = http.get(ACE_LIST, params={"limit": 1000}, headers=ACE).json()
    assert len(body["items"]) == 10 < body["count"]
    meta = http.get(LSKY_LIST, params={"per_page": 1000}, headers=LSKY).json()["data"]["meta"]
    assert (meta["per_page"], meta["to"]) == (10, 10)


def test_lsky_per_page_never_exceeds_9999() -> None:
    """Even with a larger max_page_size, per_page is capped at Lsky's 9999."""
    sim = Simulator(max_page_size=50_000)
    sim.add_lsky(2)
    with SimServer(sim) as srv, httpx.Client(base_url=srv.url) as http:
        meta = http.get(LSKY_LIST, params={"per_page": 20_000}, headers=LSKY).json()["data"]["meta"]
    assert meta["per_page"] == 9999


def test_ace_pages_to_the_end_newest_first(simu: Simulator, http: httpx.Client) -> None:
    """Paging Ace by items received yields every order once, newest first, then an empty page."""
    rows = ace_all(http, ordering="-created_at", limit=7)
    assert [o["id"] for o in rows] == [o["id"] for o in reversed(simu.orders("ace"))]
    stamps = [o["created_at"] for o in rows]
    assert stamps == sorted(stamps, reverse=True)
    oldest = ace_all(http, ordering="created_at")
    assert [o["id"] for o in oldest] == [o["id"] for o in simu.orders("ace")]


def test_ace_default_order_is_not_by_time(simu: Simulator, http: httpx.Client) -> None:
    """Without ordering Ace answers in an order unrelated to creation time (here: by id)."""
    rows = ace_all(http)
    assert [o["id"] for o in rows] == sorted(o["id"] for o in simu.orders("ace"))
    assert [o["id"] for o in rows] != [o["id"] for o in simu.orders("ace")]


def test_lsky_pages_to_the_end_and_past_it(simu: Simulator, http: httpx.Client) -> None:
    """Lsky pages cover every order once per sort; a page past the end is empty with null from/to."""
    latest = lsky_all(http, "sort:latest")
    assert [o["trade_no"] for o in latest] == [o["trade_no"] for o in reversed(simu.orders("lsky"))]
    oldest = lsky_all(http, "sort:oldest")
    assert [o["trade_no"] for o in oldest] == [o["trade_no"] for o in simu.orders("lsky")]
    last = http.get(LSKY_LIST, headers=LSKY).json()["data"]["meta"]["last_page"]
    past = http.get(LSKY_LIST, params={"page": last + 1}, headers=LSKY).json()["data"]
    assert past["data"] == []
    assert (past["meta"]["from"], past["meta"]["to"], past["links"]["next"]) == (None, None, None)
    assert past["links"]["prev"] is not None


def test_lsky_without_sort_is_unstable(simu: Simulator, http: httpx.Client) -> None:
    """Without a sort token Lsky's order is neither by time nor stable across changes."""
    before = [o["trade_no"] for o in lsky_all(http, "")]
    assert sorted(before) == sorted(o["trade_no"] for o in simu.orders("lsky"))
    oldest = [o["trade_no"] for o in simu.orders("lsky")]
    assert before not in (oldest, oldest[::-1])
    simu.add_lsky(1)
    after = [o["trade_no"] for o in lsky_all(http, "") if o["trade_no"] in before]
    assert after != before


def test_lsky_orders_share_created_at_seconds() -> None:
    """Several Lsky orders share one created_at second (there is no tie-breaker), and times never go back."""
    sim = Simulator(seed=5)
    sim.add_lsky(60)
    stamps = [o["created_at"] for o in sim.orders("lsky")]
    assert len(set(stamps)) < len(stamps)
    assert stamps == sorted(stamps)


def test_a_clock_drives_creation_times() -> None:
    """With a clock, creation times come from it and never decrease even when it goes back."""
    times = iter([datetime(2025, 1, 2, 3, 4, 5, 500000, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)])
    sim = Simulator(clock=lambda: next(times))
    sim.add_ace(2)
    assert [o["created_at"] for o in sim.orders("ace")] == ["2025-01-02T03:04:05.500000Z"] * 2


# Filters -----------------------------------------------------------------------------------------------------
def test_ace_state_filter_accepts_repeated_and_comma(simu: Simulator, http: httpx.Client) -> None:
    """state=Pending&state=Paid and state=Pending,Paid select the same orders: exactly those in these states."""
    expected = {o["id"] for o in simu.orders("ace") if o["state"] in {"Pending", "Paid"}}
    repeated = ace_all(http, ordering="-created_at", state=["Pending", "Paid"])
    comma = ace_all(http, ordering="-created_at", state="Pending,Paid")
    assert {o["id"] for o in repeated} == {o["id"] for o in comma} == expected
    assert expected and len(expected) < len(simu.orders("ace"))
    count = http.get(ACE_LIST, params={"state": "Pending,Paid"}, headers=ACE).json()["count"]
    assert count == len(expected)


def test_ace_pay_way_user_and_date_filters(simu: Simulator, http: httpx.Client) -> None:
    """pay_way (repeated), user_id and the created_at_from/to range select what they say."""
    orders = simu.orders("ace")
    ways = sorted({o["pay_way"] for o in orders})[:2]
    assert {o["id"] for o in ace_all(http, pay_way=ways)} == {o["id"] for o in orders if o["pay_way"] in ways}
    user = orders[0]["user_id"]
    assert {o["id"] for o in ace_all(http, user_id=user)} == {o["id"] for o in orders if o["user_id"] == user}
    lo, hi = orders[5]["created_at"], orders[15]["created_at"]
    ranged = ace_all(http, ordering="created_at", created_at_from=lo, created_at_to=hi)
    assert [o["id"] for o in ranged] == [o["id"] for o in orders[5:16]]
    bad = http.get(ACE_LIST, params={"created_at_from": "yesterday"}, headers=ACE)
    assert bad.status_code == 400 and "created_at_from" in bad.json()


def test_lsky_status_filter_and_trade_no_search(simu: Simulator, http: httpx.Client) -> None:
    """q=status:=:unpaid,paid keeps those statuses; a bare word matches trade_no substrings."""
    orders = simu.orders("lsky")
    kept = lsky_all(http, "status:=:unpaid,paid sort:latest")
    assert [o["trade_no"] for o in kept] == [o["trade_no"] for o in reversed(orders) if o["status"] != "cancelled"]
    assert any(o["status"] == "cancelled" for o in orders)
    word = orders[3]["trade_no"][9:19]
    assert [o["trade_no"] for o in lsky_all(http, f"{word} sort:oldest")] == [orders[3]["trade_no"]]


# Detail and summary ------------------------------------------------------------------------------------------
def test_detail_endpoints_and_404(simu: Simulator, http: httpx.Client) -> None:
    """Detail endpoints return the listed order (Ace with or without slash); unknown keys are the API's 404."""
    ace = simu.orders("ace")[4]
    assert http.get(f"{ACE_LIST}{ace['id']}", headers=ACE).json() == ace
    assert http.get(f"{ACE_LIST}{ace['id']}/", headers=ACE).json() == ace
    missing = http.get(f"{ACE_LIST}{uuid.uuid4()}", headers=ACE)
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})
    lsky = simu.orders("lsky")[4]
    body = http.get(f"{LSKY_LIST}/{lsky['trade_no']}", headers=LSKY).json()
    assert (body["status"], body["data"]) == ("success", lsky)
    gone = http.get(f"{LSKY_LIST}/2024010100000000000_002", headers=LSKY)
    assert gone.status_code == 404 and gone.json()["status"] == "error"
    assert http.get(f"{LSKY_LIST}/nope", headers={"authorization": "Bearer lsky-token"}).text.startswith("<!DOCTYPE")


def test_ace_summary_counts_states_and_spending(simu: Simulator, http: httpx.Client) -> None:
    """The summary probe has total_count, total_spent (Paid+Finished) and per-state counts, and follows changes."""
    orders = simu.orders("ace")
    body = http.get(f"{ACE_LIST}summary/", headers=ACE).json()
    assert body["total_count"] == len(orders) == sum(body["state_counts"].values())
    assert body["total_spent"] == round(sum(o["price"] for o in orders if o["state"] in {"Paid", "Finished"}), 2)
    assert body["state_counts"]["Pending"] == sum(o["state"] == "Pending" for o in orders)
    simu.add_ace(1)
    assert http.get(f"{ACE_LIST}summary", headers=ACE).json()["total_count"] == len(orders) + 1


# Changes and history -----------------------------------------------------------------------------------------
def test_history_records_every_change_in_order() -> None:
    """Creations, state changes and deletions are recorded with from/to states and consecutive seq numbers."""
    sim = Simulator(seed=1)
    [ace] = sim.add_ace(1)
    [trade] = sim.add_lsky(1)
    sim.set_state("ace", ace, "Paid")
    sim.set_state("lsky", trade, "cancelled")
    sim.delete("lsky", trade)
    got = [(c.api, c.key, c.kind, c.from_state, c.to_state, c.seq) for c in sim.history]
    assert got == [
        ("ace", ace, "created", None, "Pending", 1),
        ("lsky", trade, "created", None, "unpaid", 2),
        ("ace", ace, "state", "Pending", "Paid", 3),
        ("lsky", trade, "state", "unpaid", "cancelled", 4),
        ("lsky", trade, "deleted", "cancelled", None, 5),
    ]
    stepped = sim.step(10)
    assert sim.history[5:] == stepped and [c.seq for c in stepped] == list(range(6, 6 + len(stepped)))


def test_state_changes_update_dependent_fields() -> None:
    """Ace updated_at moves with the state (pay_url cleared); Lsky sets paid_at / canceled_at."""
    sim = Simulator(seed=2)
    [ace] = sim.add_ace(1)
    before = sim.orders("ace")[0]
    sim.set_state("ace", ace, "Paid")
    after = sim.orders("ace")[0]
    assert after["updated_at"] > before["updated_at"] and after["pay_url"] is None
    paid, cancelled = sim.add_lsky(2)
    sim.set_state("lsky", paid, "paid")
    sim.set_state("lsky", cancelled, "cancelled")
    rows = {o["trade_no"]: o for o in sim.orders("lsky")}
    assert rows[paid]["paid_at"] and rows[paid]["canceled_at"] is None
    assert rows[cancelled]["canceled_at"] and rows[cancelled]["paid_at"] is None
    with pytest.raises(ValueError, match="unknown ace state"):
        sim.set_state("ace", ace, "Shipped")


def test_only_cancelled_lsky_orders_can_be_deleted(simu: Simulator, http: httpx.Client) -> None:
    """Deleting an unpaid/paid Lsky order is refused; a cancelled one vanishes from the list and detail."""
    unpaid = next(o["trade_no"] for o in simu.orders("lsky") if o["status"] == "unpaid")
    with pytest.raises(ValueError, match="only cancelled"):
        simu.delete("lsky", unpaid)
    simu.set_state("lsky", unpaid, "cancelled")
    simu.delete("lsky", unpaid)
    assert unpaid not in {o["trade_no"] for o in lsky_all(http, "sort:latest")}
    assert http.get(f"{LSKY_LIST}/{unpaid}", headers=LSKY).status_code == 404
    with pytest.raises(KeyError):
        simu.delete("lsky", unpaid)


def test_ace_orders_can_be_deleted_for_vanish_tests(simu: Simulator, http: httpx.Client) -> None:
    """An Ace order deleted by a test disappears from list and detail (404)."""
    key = simu.orders("ace")[0]["id"]
    simu.delete("ace", key)
    assert key not in {o["id"] for o in ace_all(http)}
    assert http.get(f"{ACE_LIST}{key}", headers=ACE).status_code == 404


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), steps=st.integers(min_value=1, max_value=300))
def test_step_only_makes_legal_moves(seed: int, steps: int) -> None:
    """Replaying step()'s history follows the state machines; births are legal; only cancelled Lsky is deleted."""
    sim = Simulator(seed=seed)
    sim.add_ace(5)
    sim.add_lsky(5)
    sim.step(steps)
    births = {"ace": {"Pending", "Paid", "Finished"}, "lsky": {"unpaid", "paid"}}
    seen: dict[tuple[str, str], str] = {}
    for change in sim.history:
        where = (change.api, change.key)
        if change.kind == "created":
            assert where not in seen and change.to_state in births[change.api]
            seen[where] = str(change.to_state)
        elif change.kind == "state":
            assert change.from_state == seen[where] and change.to_state in TRANSITIONS[change.api][seen[where]]
            seen[where] = str(change.to_state)
        else:
            assert change.api == "lsky" and seen.pop(where) == "cancelled" == change.from_state
    apis: list[Api] = ["ace", "lsky"]
    for api in apis:
        key = "id" if api == "ace" else "trade_no"
        field = "state" if api == "ace" else "status"
        current = {(api, o[key]): o[field] for o in sim.orders(api)}
        assert current == {k: v for k, v in seen.items() if k[0] == api}
    twin = Simulator(seed=seed)
    twin.add_ace(5)
    twin.add_lsky(5)
    assert twin.step(steps) == sim.history[10:]


def test_zero_price_orders_are_born_paid() -> None:
    """step() eventually creates zero-price Ace orders, and they are born Paid or Finished."""
    sim = Simulator(seed=4)
    sim.step(600)
    free = [o for o in sim.orders("ace") if o["price"] == 0]
    assert free and all(o["state"] in {"Paid", "Finished", "Refunded", "Failed"} for o in free)
    born = {c.key: c.to_state for c in sim.history if c.kind == "created"}
    assert all(born[o["id"]] in {"Paid", "Finished"} for o in free)


# Faults ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["ace", "lsky"])
@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        ("http500", 500, "application/json"),
        ("http502", 502, "application/json"),
        ("http503", 503, "application/json"),
        ("html", 502, "text/html"),
        ("rate_limit", 429, "application/json"),
        ("auth", 401, "application/json"),
    ],
)
def test_http_error_faults(
    simu: Simulator, http: httpx.Client, api: Api, kind: str, status: int, content_type: str
) -> None:
    """Each HTTP fault answers its status and content type once; 429 carries Retry-After: 1."""
    path, headers = (ACE_LIST, ACE) if api == "ace" else (LSKY_LIST, LSKY)
    simu.inject(api, kind)
    resp = http.get(path, headers=headers)
    assert resp.status_code == status and resp.headers["content-type"].startswith(content_type)
    if kind == "rate_limit":
        assert resp.headers["retry-after"] == "1"
    if kind == "auth" and api == "lsky":
        assert resp.json() == {"message": "Unauthenticated."}
    elif kind == "auth":
        assert resp.json()["error"]["code"] == "invalid_token"
    assert http.get(path, headers=headers).status_code == 200


@pytest.mark.parametrize("api", ["ace", "lsky"])
def test_truncated_fault_cuts_the_json(simu: Simulator, http: httpx.Client, api: Api) -> None:
    """A truncated answer is HTTP 200 JSON with consistent headers, but the body is half a document."""
    path, headers = (ACE_LIST, ACE) if api == "ace" else (LSKY_LIST, LSKY)
    whole = http.get(path, headers=headers).content
    simu.inject(api, "truncated")
    resp = http.get(path, headers=headers)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert int(resp.headers["content-length"]) == len(resp.content) < len(whole)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(resp.content)


def test_error_body_faults_are_http_200(simu: Simulator, http: httpx.Client) -> None:
    """error_body answers HTTP 200 with Lsky's {"status": "error"} / Ace's {"error": {"code": "internal"}}."""
    simu.inject("lsky", "error_body")
    simu.inject("ace", "error_body")
    lsky = http.get(LSKY_LIST, headers=LSKY)
    ace = http.get(ACE_LIST, headers=ACE)
    assert lsky.status_code == ace.status_code == 200
    assert lsky.json()["status"] == "error" and lsky.json()["message"]
    assert ace.json()["error"]["code"] == "internal" and "items" not in ace.json()


def test_slow_fault_delays_the_answer(simu: Simulator, http: httpx.Client) -> None:
    """A slow answer arrives only after slow_seconds: a client with a much shorter timeout gives up."""
    simu.faults.slow_seconds = 2.0
    simu.inject("ace", "slow")
    with pytest.raises(httpx.TimeoutException):
        http.get(ACE_LIST, headers=ACE, timeout=0.1)
    simu.faults.slow_seconds = 0.5
    simu.inject("lsky", "slow")
    assert simu.handle_request("GET", LSKY_LIST, LSKY, "http://x").delay == 0.5
    assert http.get(LSKY_LIST, headers=LSKY).status_code == 200


def test_drift_insert_pushes_rows_down(simu: Simulator, http: httpx.Client) -> None:
    """drift_insert creates 1-3 orders before answering, so the next newest-first page repeats rows."""
    first = http.get(LSKY_LIST, params={"q": "sort:latest", "per_page": 5}, headers=LSKY).json()["data"]
    mark = len(simu.history)
    simu.inject("lsky", "drift_insert")
    second = http.get(LSKY_LIST, params={"q": "sort:latest", "per_page": 5, "page": 2}, headers=LSKY).json()["data"]
    added = simu.history[mark:]
    assert 1 <= len(added) <= 3 and all(c.kind == "created" and c.api == "lsky" for c in added)
    assert second["meta"]["total"] == first["meta"]["total"] + len(added)
    assert second["data"][0] == first["data"][5 - len(added)]


def test_drift_delete_pulls_rows_up(simu: Simulator, http: httpx.Client) -> None:
    """drift_delete makes an order leave the listing before answering (Lsky: deleted), so a row is skipped."""
    oldest = lsky_all(http, "sort:oldest")
    mark = len(simu.history)
    simu.inject("lsky", "drift_delete")
    page2 = http.get(LSKY_LIST, params={"q": "sort:oldest", "per_page": 5, "page": 2}, headers=LSKY).json()["data"]
    deleted = [c for c in simu.history[mark:] if c.kind == "deleted"]
    assert len(deleted) == 1 and deleted[0].key in {o["trade_no"] for o in oldest[:5]}
    assert page2["data"][0] == oldest[6]


def test_drift_delete_moves_an_ace_order_out_of_the_filter(simu: Simulator, http: httpx.Client) -> None:
    """For Ace, drift_delete moves the first order of a state-filtered listing to a state outside the filter."""
    pending = ace_all(http, ordering="-created_at", state="Pending")
    mark = len(simu.history)
    simu.inject("ace", "drift_delete")
    body = http.get(ACE_LIST, params={"ordering": "-created_at", "state": "Pending"}, headers=ACE).json()
    [moved] = simu.history[mark:]
    assert (moved.key, moved.from_state, moved.kind) == (pending[0]["id"], "Pending", "state")
    assert moved.to_state not in {"Pending"} and body["count"] == len(pending) - 1


def test_injection_is_one_shot_and_per_api(simu: Simulator, http: httpx.Client) -> None:
    """inject(count=2) fails exactly the next two requests to that API (detail ones too); others are untouched."""
    simu.inject("ace", "http503", count=2)
    assert http.get(LSKY_LIST, headers=LSKY).status_code == 200
    codes = [http.get(ACE_LIST, headers=ACE).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    trade_no = simu.orders("lsky")[0]["trade_no"]
    simu.inject("lsky", "http502")
    assert http.get(f"{LSKY_LIST}/{trade_no}", headers=LSKY).status_code == 502
    assert http.get(f"{LSKY_LIST}/{trade_no}", headers=LSKY).status_code == 200
    with pytest.raises(ValueError, match="unknown fault kind"):
        simu.inject("ace", "meteor")


def test_random_faults_follow_rate_and_kinds(simu: Simulator, http: httpx.Client) -> None:
    """At rate 1 every request gets one of the configured kinds; at rate 0 none does."""
    simu.faults.rate, simu.faults.kinds = 1.0, {"http500", "http502"}
    codes = {http.get(ACE_LIST, headers=ACE).status_code for _ in range(12)}
    assert codes == {500, 502}
    simu.faults.rate = 0.0
    assert {http.get(LSKY_LIST, headers=LSKY).status_code for _ in range(5)} == {200}


def test_stats_count_requests_and_bytes(simu: Simulator, http: httpx.Client) -> None:
    """requests() and bytes() count each API's answers and body bytes; reset_stats() zeroes them."""
    simu.reset_stats()
    sizes = [len(http.get(ACE_LIST, headers=ACE).content) for _ in range(3)]
    sizes.append(len(http.get(ACE_LIST).content))
    assert (simu.requests("ace"), simu.bytes("ace"), simu.requests("lsky")) == (4, sum(sizes), 0)
    simu.reset_stats()
    assert (simu.requests("ace"), simu.bytes("ace")) == (0, 0)


# Server life cycle, clock, concurrency -----------------------------------------------------------------------
def test_stop_returns_with_keep_alive_connections_open(simu: Simulator) -> None:
    """stop() closes idle keep-alive connections instead of waiting for clients to hang up."""
    server = SimServer(simu).start()
    with httpx.Client(base_url=server.url) as http:
        assert http.get(ACE_LIST, headers=ACE).status_code == 200
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        stopper.join(timeout=10)
        assert not stopper.is_alive()
        with pytest.raises(httpx.TransportError):
            http.get(ACE_LIST, headers=ACE)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url


def test_run_clock_steps_until_stopped() -> None:
    """run_clock() keeps changing orders on a timer and its thread ends when the event is set."""
    sim = Simulator(seed=9)
    stop = threading.Event()
    thread = run_clock(sim, 0.01, stop)
    assert wait_until(lambda: len(sim.history) >= 5)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.mark.anyio
async def test_async_clients_page_both_apis_concurrently(simu: Simulator, served: SimServer) -> None:
    """Concurrent async requests to both APIs, while orders change, all get whole answers."""
    stop = threading.Event()
    clock = run_clock(simu, 0.005, stop)
    results: list[int] = []

    async def fetch(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
        resp = await client.get(path, headers=headers)
        orjson.loads(resp.content)
        results.append(resp.status_code)

    try:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client, anyio.create_task_group() as tg:
            for i in range(20):
                path, headers = (ACE_LIST, ACE) if i % 2 else (LSKY_LIST, LSKY)
                tg.start_soon(fetch, client, path, headers)
    finally:
        stop.set()
        clock.join(timeout=10)
    assert results == [200] * 20


def test_standalone_module_serves_until_interrupted() -> None:
    """`python -m orderwatch.simulator` prints its URL and tokens, serves both APIs, and exits 0 on Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orderwatch.simulator", "--port", "0", "--orders", "5", "--step-every", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=30)
        url = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert url is not None
        assert "ace-token" in lines.get(timeout=10) + lines.get(timeout=10)
        with httpx.Client(base_url=url.group(0), timeout=10) as http:
            assert http.get(ACE_LIST, headers=ACE).json()["count"] >= 5
            assert http.get(LSKY_LIST, headers=LSKY).json()["status"] == "success"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
    reader.join(timeout=10)
    assert lines.get(timeout=5).strip() == "stopped"

"""The simulator's conventions: each switch answers as the real server it names, over real HTTP on loopback."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from typing import Any, cast, get_args, get_type_hints

import httpx
import pytest

from orderwatch.simulator import Conventions, SimServer, Simulator
from orderwatch.simulator.__main__ import main

ACE = {"authorization": "Bearer ace-token", "accept": "application/json"}
LSKY = {"authorization": "Bearer lsky-token", "accept": "application/json"}
ACE_LIST = "/api/v1/orders/"
LSKY_LIST = "/api/v2/user/orders"
CLAIMS: dict[str, Callable[[int], object]] = {
    "true": lambda n: n,
    "low": lambda n: n // 3,
    "high": lambda n: n * 10,
    "huge": lambda _: 10**12,
    "zero": lambda _: 0,
    "negative": lambda _: -1,
    "null": lambda _: None,
    "string": lambda _: "many",
}


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
    """A client for the served simulator (no default headers; redirects are not followed unless asked)."""
    with httpx.Client(base_url=served.url, timeout=10) as client:
        yield client


def use(sim: Simulator, **switches: Any) -> None:
    """Switch the running simulator to the default conventions with ``switches`` changed."""
    sim.conventions = replace(Conventions(), **switches)


def ace_rows(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every Ace order a list answers (under either list key), paging by items received."""
    rows: list[dict[str, Any]] = []
    while True:
        body = http.get(ACE_LIST, params={**params, "offset": len(rows)}, headers=ACE).json()
        page = body["items"] if "items" in body else body["results"]
        if not page:
            return rows
        rows.extend(page)


def lsky_rows(http: httpx.Client, q: str = "", per_page: int = 7) -> list[dict[str, Any]]:
    """Every Lsky order a list answers, page by page until an empty page (whatever the paginator's shape)."""
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        params: dict[str, Any] = {"page": page, "per_page": per_page, "q": q}
        data = http.get(LSKY_LIST, params=params, headers=LSKY).json()["data"]
        if not data["data"]:
            return rows
        rows.extend(data["data"])
        page += 1


def ids(rows: list[dict[str, Any]], key: str = "id") -> set[str]:
    """The keys of ``rows``."""
    return {o[key] for o in rows}


# The value type ----------------------------------------------------------------------------------------------
def test_default_conventions_are_the_first_value_of_every_switch() -> None:
    """Conventions() has every switch at its first listed value; a Simulator starts with it; str says default."""
    assert Simulator().conventions == Conventions()
    assert str(Conventions()) == "default" and Conventions().changes() == {}
    for name, values in Conventions.switches().items():
        assert getattr(Conventions(), name) == next(iter(values))


def test_every_switch_documents_every_value_it_types() -> None:
    """Each switch's documented values are exactly its Literal type's values, each with a description."""
    hints = get_type_hints(Conventions)
    for f in fields(Conventions):
        documented = f.metadata["values"]
        assert tuple(documented) == get_args(hints[f.name]), f.name
        assert all(len(meaning) > 20 for meaning in documented.values()), f.name


def test_bad_values_are_refused() -> None:
    """A value outside a switch's choices is a ValueError naming the switch; conventions must be Conventions."""
    untyped: dict[str, Any] = {"ace_multi": "sometimes"}  # what a caller without a type checker may pass
    with pytest.raises(ValueError, match="ace_multi cannot be 'sometimes'"):
        Conventions(**untyped)
    sim, not_conventions = Simulator(), cast("Any", untyped)
    with pytest.raises(TypeError, match="must be a Conventions"):
        sim.conventions = not_conventions
    assert sim.conventions == Conventions()


def test_variations_list_every_single_switch_once() -> None:
    """variations() holds one Conventions per (switch, non-default value), each differing in that switch only."""
    variations = Conventions.variations()
    expected = {(name, v) for name, values in Conventions.switches().items() for v in list(values)[1:]}
    assert len(variations) == len(expected) == len(set(variations))
    assert {next(iter(c.changes().items())) for c in variations} == expected
    assert all(len(c.changes()) == 1 for c in variations)


def test_str_round_trips_through_with_switches() -> None:
    """str() of any variation or preset, read back by with_switches(), gives the same conventions."""
    for conv in [*Conventions.variations(), *(make() for make in Conventions.presets().values())]:
        assert Conventions().with_switches(str(conv).split() if conv.changes() else []) == conv


def test_with_switches_takes_short_names_for_every_api_that_accepts_the_value() -> None:
    """A name without ace_/lsky_ sets each API's switch that has the value; unknown names and values are errors."""
    conv = Conventions().with_switches(["detail=none", "count=low", "multi=last", "lsky_sort=ignored"])
    assert conv.changes() == {
        "ace_multi": "last",
        "ace_detail": "none",
        "lsky_detail": "none",
        "lsky_sort": "ignored",
        "ace_count": "low",
        "lsky_count": "low",
    }
    assert Conventions().with_switches(["detail=slash"]).changes() == {"ace_detail": "slash"}
    with pytest.raises(ValueError, match="no switch 'colour'"):
        Conventions().with_switches(["colour=blue"])
    with pytest.raises(ValueError, match="'sideways' is not a value of ace_detail"):
        Conventions().with_switches(["detail=sideways"])
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        Conventions().with_switches(["ace_multi"])


def test_presets_move_only_their_own_api_and_merge() -> None:
    """django() changes Ace switches only, laravel() Lsky's only; merged() combines them; seed() is the seed."""
    django, laravel = Conventions.django(), Conventions.laravel()
    assert django.changes() == {"ace_multi": "last", "ace_detail": "slash", "ace_list": "results", "ace_links": "drf"}
    assert laravel.changes() == {"lsky_paginator": "plain"}
    assert django.merged(laravel).changes() == {**django.changes(), **laravel.changes()}
    assert Conventions.seed().changes() == {"ace_multi": "comma", "ace_list": "results"}


def test_ace_list_key_is_a_shorthand_for_the_list_convention() -> None:
    """Simulator(ace_list_key=...) and sim.ace_list_key read and set conventions.ace_list."""
    sim = Simulator(ace_list_key="results", conventions=Conventions(ace_detail="slash"))
    assert sim.conventions == Conventions(ace_detail="slash", ace_list="results")
    sim.ace_list_key = "items"
    assert (sim.ace_list_key, sim.conventions.ace_detail) == ("items", "slash")


# Under every convention --------------------------------------------------------------------------------------
@pytest.mark.parametrize("conventions", Conventions.variations(), ids=str)
def test_no_convention_changes_the_orders_or_loses_one(
    simu: Simulator, http: httpx.Client, conventions: Conventions
) -> None:
    """Under each single switch, an unfiltered sweep by items received lists every order once, and no request
    (lists, filters, details, summary, POST) changes the orders or their history."""
    simu.conventions = conventions
    history, ace, lsky = list(simu.history), simu.orders("ace"), simu.orders("lsky")
    swept = ace_rows(http, ordering="-created_at", limit=7)
    assert sorted(o["id"] for o in swept) == sorted(o["id"] for o in ace)
    listed = lsky_rows(http, "sort:latest")
    assert sorted(o["trade_no"] for o in listed) == sorted(o["trade_no"] for o in lsky)
    for path, params, headers in [
        (ACE_LIST, {"state": "Pending,Paid", "pay_way": ["Stripe", "Card"]}, ACE),
        (ACE_LIST, {"created_at_from": ace[3]["created_at"], "created_at_to": "junk"}, ACE),
        (f"{ACE_LIST}{ace[2]['id']}", {}, ACE),
        (f"{ACE_LIST}{ace[2]['id']}/", {}, ACE),
        (f"{ACE_LIST}summary", {}, ACE),
        (LSKY_LIST, {"q": "status:=:unpaid,paid 2024 sort:oldest"}, LSKY),
        (f"{LSKY_LIST}/{lsky[2]['trade_no']}", {}, LSKY),
    ]:
        assert http.get(path, params=params, headers=headers, follow_redirects=True).status_code in {200, 400, 404}
    assert http.post(ACE_LIST, headers=ACE, content=b"{}").status_code in {301, 405}
    assert simu.history == history
    assert (simu.orders("ace"), simu.orders("lsky")) == (ace, lsky)


def test_switching_at_run_time_changes_the_next_answer(simu: Simulator, http: httpx.Client) -> None:
    """Assigning sim.conventions while serving changes the very next answer, and switching back restores it."""
    params = {"state": "Pending,Paid"}
    wanted = sum(o["state"] in {"Pending", "Paid"} for o in simu.orders("ace"))
    assert http.get(ACE_LIST, params=params, headers=ACE).json()["count"] == wanted > 0
    use(simu, ace_multi="last")
    assert http.get(ACE_LIST, params=params, headers=ACE).json() == {"count": 0, "items": []}
    simu.conventions = Conventions()
    assert http.get(ACE_LIST, params=params, headers=ACE).json()["count"] == wanted


# Multi-valued filters ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reading", "repeated", "comma"),
    [
        ("lenient", {"Pending", "Paid"}, {"Pending", "Paid"}),
        ("last", {"Paid"}, set()),
        ("in", {"Paid"}, {"Pending", "Paid"}),
        ("choice", {"Pending", "Paid"}, None),
        ("comma", {"Paid"}, {"Pending", "Paid"}),
    ],
)
def test_multi_valued_state_under_each_reading(
    simu: Simulator, http: httpx.Client, reading: str, repeated: set[str], comma: set[str] | None
) -> None:
    """state=Pending&state=Paid and state=Pending,Paid select what each django-filter reading selects (None: 400)."""
    use(simu, ace_multi=reading)
    orders = simu.orders("ace")

    def having(states: set[str]) -> set[str]:
        return {o["id"] for o in orders if o["state"] in states}

    assert having({"Pending"}) and having({"Paid"})
    assert ids(ace_rows(http, ordering="-created_at", state=["Pending", "Paid"])) == having(repeated)
    answer = http.get(ACE_LIST, params={"state": "Pending,Paid"}, headers=ACE)
    if comma is None:
        assert answer.status_code == 400
        assert answer.json() == {"state": ["Select a valid choice. Pending,Paid is not one of the available choices."]}
        return
    assert answer.status_code == 200 and answer.json()["count"] == len(having(comma))
    assert ids(ace_rows(http, ordering="-created_at", state="Pending,Paid")) == having(comma)


def test_every_multi_valued_filter_follows_the_reading(simu: Simulator, http: httpx.Client) -> None:
    """pay_way and user_id follow the same reading as state: literal under last, choices checked under choice."""
    orders = simu.orders("ace")
    ways = sorted({o["pay_way"] for o in orders})[:2]
    user = orders[0]["user_id"]
    use(simu, ace_multi="last")
    assert ace_rows(http, pay_way=",".join(ways)) == []
    assert ids(ace_rows(http, pay_way=ways)) == {o["id"] for o in orders if o["pay_way"] == ways[-1]}
    use(simu, ace_multi="choice")
    assert ids(ace_rows(http, user_id=user)) == {o["id"] for o in orders if o["user_id"] == user}
    stranger = str(uuid.uuid4())
    bad = http.get(ACE_LIST, params={"user_id": [user, stranger], "pay_way": "Bitcoin"}, headers=ACE)
    assert bad.status_code == 400
    assert bad.json() == {
        "pay_way": ["Select a valid choice. Bitcoin is not one of the available choices."],
        "user_id": [f"Select a valid choice. {stranger} is not one of the available choices."],
    }


def test_state_filter_can_be_ignored(simu: Simulator, http: httpx.Client) -> None:
    """With state_filter=ignored a state filter returns every order (HTTP 200), under any multi reading."""
    everyone = ids(simu.orders("ace"))
    for reading in ("lenient", "choice"):
        use(simu, ace_multi=reading, ace_state_filter="ignored")
        assert ids(ace_rows(http, state="Pending,Nope")) == everyone


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("honoured", {"unpaid", "paid"}), ("first", {"unpaid"}), ("ignored", {"unpaid", "paid", "cancelled"})],
)
def test_lsky_status_token_under_each_mode(simu: Simulator, http: httpx.Client, mode: str, expected: set[str]) -> None:
    """q=status:=:unpaid,paid keeps both statuses, only the first, or (ignored) every status."""
    use(simu, lsky_status_filter=mode)
    orders = simu.orders("lsky")
    assert {o["status"] for o in orders} == {"unpaid", "paid", "cancelled"}
    got = lsky_rows(http, "status:=:unpaid,paid sort:latest")
    assert ids(got, "trade_no") == {o["trade_no"] for o in orders if o["status"] in expected}


# Detail endpoints --------------------------------------------------------------------------------------------
def test_ace_detail_slash_redirects_like_append_slash(simu: Simulator, http: httpx.Client) -> None:
    """detail=slash: /{id}/ answers; /{id} (and any slash-less Ace path) is a 301 to the slash form on the same
    origin, query kept, before authentication; following it gives the order."""
    use(simu, ace_detail="slash")
    order = simu.orders("ace")[4]
    assert http.get(f"{ACE_LIST}{order['id']}/", headers=ACE).json() == order
    moved = http.get(f"{ACE_LIST}{order['id']}", params={"x": "1"})
    assert moved.status_code == 301 and moved.content == b""
    assert moved.headers["location"] == f"{ACE_LIST}{order['id']}/?x=1"
    followed = http.get(f"{ACE_LIST}{order['id']}", headers=ACE, follow_redirects=True)
    assert followed.json() == order and followed.history[0].status_code == 301
    assert str(followed.url) == f"{http.base_url}{ACE_LIST}{order['id']}/"
    assert http.get("/api/v1/orders", params={"limit": 3}).headers["location"] == "/api/v1/orders/?limit=3"
    assert http.get(f"{ACE_LIST}summary", headers=ACE).headers["location"] == f"{ACE_LIST}summary/"
    assert http.get(f"{ACE_LIST}summary/", headers=ACE).json()["total_count"] == len(simu.orders("ace"))


def test_ace_detail_noslash_answers_only_without_the_slash(simu: Simulator, http: httpx.Client) -> None:
    """detail=noslash: /{id} answers; /{id}/ matches no route: Django's HTML 404, even without a token."""
    use(simu, ace_detail="noslash")
    order = simu.orders("ace")[4]
    assert http.get(f"{ACE_LIST}{order['id']}", headers=ACE).json() == order
    for headers in (ACE, {}):
        gone = http.get(f"{ACE_LIST}{order['id']}/", headers=headers)
        assert gone.status_code == 404 and gone.headers["content-type"].startswith("text/html")
        assert "<h1>Not Found</h1>" in gone.text
    assert http.get(ACE_LIST, headers=ACE).json()["count"] == len(simu.orders("ace"))


def test_ace_detail_none_is_drf_404_for_every_id(simu: Simulator, http: httpx.Client) -> None:
    """detail=none: every detail path, existing order or not, either form, is DRF's 404; the list still works."""
    use(simu, ace_detail="none")
    key = simu.orders("ace")[4]["id"]
    for path in (f"{ACE_LIST}{key}", f"{ACE_LIST}{key}/", f"{ACE_LIST}{uuid.uuid4()}/"):
        gone = http.get(path, headers=ACE)
        assert (gone.status_code, gone.json()) == (404, {"detail": "Not found."})
    assert http.get(f"{ACE_LIST}{key}").status_code == 401
    assert http.get(ACE_LIST, headers=ACE).status_code == 200


def test_detail_ignores_id_answers_the_newest_order(simu: Simulator, http: httpx.Client) -> None:
    """detail=ignores_id: any id, even an unknown one, gets HTTP 200 with the newest order (both APIs)."""
    use(simu, ace_detail="ignores_id", lsky_detail="ignores_id")
    ace, lsky = simu.orders("ace"), simu.orders("lsky")
    for key in (ace[0]["id"], str(uuid.uuid4())):
        assert http.get(f"{ACE_LIST}{key}/", headers=ACE).json() == ace[-1]
    for trade_no in (lsky[0]["trade_no"], "2024010100000000000_002"):
        body = http.get(f"{LSKY_LIST}/{trade_no}", headers=LSKY).json()
        assert (body["status"], body["data"]) == ("success", lsky[-1])


def test_lsky_detail_none_is_laravels_unrouted_404(simu: Simulator, http: httpx.Client) -> None:
    """lsky_detail=none: the detail path matches no route: Laravel's JSON 404 (HTML without Accept), before auth."""
    use(simu, lsky_detail="none")
    trade_no = simu.orders("lsky")[4]["trade_no"]
    for headers in (LSKY, {"accept": "application/json"}):
        gone = http.get(f"{LSKY_LIST}/{trade_no}", headers=headers)
        assert gone.status_code == 404
        assert gone.json() == {"message": f"The route api/v2/user/orders/{trade_no} could not be found."}
    assert http.get(f"{LSKY_LIST}/{trade_no}").text.startswith("<!DOCTYPE html>")
    assert http.get(LSKY_LIST, headers=LSKY).json()["status"] == "success"


# Sorting, ranges, search -------------------------------------------------------------------------------------
def test_ace_ordering_can_be_ignored(simu: Simulator, http: httpx.Client) -> None:
    """ace_sort=ignored: ordering=-created_at answers in the undocumented default order (by id), not by time."""
    use(simu, ace_sort="ignored")
    got = [o["id"] for o in ace_rows(http, ordering="-created_at")]
    assert got == sorted(o["id"] for o in simu.orders("ace")) == [o["id"] for o in ace_rows(http)]
    assert got != [o["id"] for o in reversed(simu.orders("ace"))]


def test_lsky_sort_can_be_ignored(simu: Simulator, http: httpx.Client) -> None:
    """lsky_sort=ignored: sort:latest answers the unsorted order (the same as without a sort), not by time."""
    use(simu, lsky_sort="ignored")
    newest_first = [o["trade_no"] for o in reversed(simu.orders("lsky"))]
    got = [o["trade_no"] for o in lsky_rows(http, "sort:latest")]
    assert got == [o["trade_no"] for o in lsky_rows(http, "")]
    assert sorted(got) == sorted(newest_first) and got not in (newest_first, newest_first[::-1])


@pytest.mark.parametrize(("mode", "last"), [("inclusive", 15), ("exclusive_to", 14), ("ignored", None)])
def test_ace_created_range_under_each_mode(simu: Simulator, http: httpx.Client, mode: str, last: int | None) -> None:
    """created_at_from/to are gte/lte, gte/lt, or ignored (then even an invalid date is no 400)."""
    use(simu, ace_created_range=mode)
    orders = simu.orders("ace")
    lo, hi = orders[5]["created_at"], orders[15]["created_at"]
    got = [o["id"] for o in ace_rows(http, ordering="created_at", created_at_from=lo, created_at_to=hi)]
    assert got == [o["id"] for o in (orders if last is None else orders[5 : last + 1])]
    bad = http.get(ACE_LIST, params={"created_at_to": "tomorrow"}, headers=ACE)
    assert bad.status_code == (200 if last is None else 400)


def test_lsky_search_substring_prefix_or_ignored(simu: Simulator, http: httpx.Client) -> None:
    """Bare words in q match inside trade_no, only at its start, or (ignored) match everything."""
    orders = simu.orders("lsky")
    target = orders[3]["trade_no"]
    middle, start = target[9:19], target[:17]
    use(simu, lsky_search="substring")
    assert ids(lsky_rows(http, f"{middle} sort:oldest"), "trade_no") == {target}
    use(simu, lsky_search="prefix")
    assert lsky_rows(http, f"{middle} sort:oldest") == []
    assert target in ids(lsky_rows(http, f"{start} sort:oldest"), "trade_no")
    assert all(o["trade_no"].startswith(start) for o in lsky_rows(http, f"{start} sort:oldest"))
    use(simu, lsky_search="ignored")
    assert len(lsky_rows(http, f"{middle} sort:oldest")) == len(orders)


# Counts ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lie", [*CLAIMS, "missing"])
def test_ace_count_lies_but_rows_do_not(simu: Simulator, http: httpx.Client, lie: str) -> None:
    """ace_count changes only the count (or drops it); pages hold the true rows, also past a low count."""
    truth = [o["id"] for o in ace_rows(http, ordering="-created_at")]
    use(simu, ace_count=lie)
    body = http.get(ACE_LIST, params={"ordering": "-created_at"}, headers=ACE).json()
    if lie == "missing":
        assert "count" not in body
    else:
        assert body["count"] == CLAIMS[lie](len(truth))
    assert [o["id"] for o in ace_rows(http, ordering="-created_at")] == truth
    past = http.get(ACE_LIST, params={"ordering": "-created_at", "offset": len(truth) // 3 + 1}, headers=ACE).json()
    assert [o["id"] for o in past["items"]] == truth[len(truth) // 3 + 1 :][:10]


@pytest.mark.parametrize("lie", [*CLAIMS, "missing"])
@pytest.mark.parametrize("shape", ["resource", "plain"])
def test_lsky_total_lies_but_rows_do_not(simu: Simulator, http: httpx.Client, lie: str, shape: str) -> None:
    """lsky_count changes total and last_page (and the links a paginator derives from a numeric total), never
    which rows a page holds."""
    truth = [o["trade_no"] for o in lsky_rows(http, "sort:latest", per_page=5)]
    use(simu, lsky_count=lie, lsky_paginator=shape)
    assert [o["trade_no"] for o in lsky_rows(http, "sort:latest", per_page=5)] == truth
    params: dict[str, Any] = {"q": "sort:latest", "per_page": 5, "page": 2}
    data = http.get(LSKY_LIST, params=params, headers=LSKY).json()["data"]
    meta = data["meta"] if shape == "resource" else data
    next_url = data["links"]["next"] if shape == "resource" else data["next_page_url"]
    if lie == "missing":
        assert "total" not in meta and "last_page" not in meta
        assert next_url is not None
        return
    claim = CLAIMS[lie](len(truth))
    last = max(1, math.ceil(claim / 5)) if isinstance(claim, int) else claim
    assert (meta["total"], meta["last_page"]) == (claim, last)
    links_last = last if isinstance(last, int) else math.ceil(len(truth) / 5)  # a non-number: links follow the truth
    assert (next_url is not None) == (links_last > 2)
    assert (meta["current_page"], meta["from"], meta["to"]) == (2, 6, 10)


# Paginator shapes --------------------------------------------------------------------------------------------
def test_lsky_plain_paginator_is_laravels_flat_to_array(simu: Simulator, served: SimServer, http: httpx.Client) -> None:
    """lsky_paginator=plain: data is LengthAwarePaginator::toArray(), with the same rows and numbers as the seed's."""
    params: dict[str, Any] = {"q": "sort:latest", "per_page": 5, "page": 2}
    seed = http.get(LSKY_LIST, params=params, headers=LSKY).json()["data"]
    use(simu, lsky_paginator="plain")
    body = http.get(LSKY_LIST, params=params, headers=LSKY).json()
    assert (body["status"], body["message"]) == ("success", "successful")
    data, path = body["data"], served.url + LSKY_LIST
    assert list(data) == [
        "current_page", "data", "first_page_url", "from", "last_page", "last_page_url", "links", "next_page_url",
        "path", "per_page", "prev_page_url", "to", "total",
    ]  # fmt: skip
    assert data["data"] == seed["data"]
    assert {k: data[k] for k in seed["meta"]} == seed["meta"]
    assert (data["first_page_url"], data["prev_page_url"], data["next_page_url"]) == (
        f"{path}?page=1",
        f"{path}?page=1",
        f"{path}?page=3",
    )
    assert data["last_page_url"] == seed["links"]["last"]


def test_lsky_simple_paginator_has_no_total(simu: Simulator, served: SimServer, http: httpx.Client) -> None:
    """lsky_paginator=simple: no total or last_page; next_page_url is null exactly on the last non-empty page."""
    use(simu, lsky_paginator="simple")
    total, path = len(simu.orders("lsky")), served.url + LSKY_LIST
    last = math.ceil(total / 10)
    for page in range(1, last + 2):
        data = http.get(LSKY_LIST, params={"page": page, "per_page": 10}, headers=LSKY).json()["data"]
        assert list(data) == [
            "current_page", "current_page_url", "data", "first_page_url", "from", "next_page_url", "path",
            "per_page", "prev_page_url", "to",
        ]  # fmt: skip
        assert (data["current_page"], data["current_page_url"]) == (page, f"{path}?page={page}")
        assert data["next_page_url"] == (f"{path}?page={page + 1}" if page < last else None)
        assert len(data["data"]) == max(0, min(10, total - (page - 1) * 10))
    assert data["from"] is None and data["to"] is None


def test_ace_drf_links_follow_limit_offset_pagination(simu: Simulator, served: SimServer, http: httpx.Client) -> None:
    """ace_links=drf: absolute next/previous URLs as LimitOffsetPagination builds them (query sorted, the clamped
    limit, offset dropped when it reaches 0), null at the ends; following next lists every order once."""
    use(simu, ace_links="drf", ace_list="results")
    base = served.url + ACE_LIST
    body = http.get(ACE_LIST, params={"ordering": "-created_at", "limit": 5, "offset": 7}, headers=ACE).json()
    assert list(body) == ["count", "next", "previous", "results"]
    assert body["next"] == f"{base}?limit=5&offset=12&ordering=-created_at"
    assert body["previous"] == f"{base}?limit=5&offset=2&ordering=-created_at"
    early = http.get(ACE_LIST, params={"offset": 3, "limit": 5, "state": ["Pending", "Paid"]}, headers=ACE).json()
    assert early["previous"] == f"{base}?limit=5&state=Pending&state=Paid"
    rows: list[dict[str, Any]] = []
    url: str | None = f"{ACE_LIST}?ordering=-created_at&limit=1000"
    first = True
    while url is not None:
        page = http.get(url, headers=ACE).json()
        assert (page["previous"] is None) == first
        rows.extend(page["results"])
        url, first = page["next"], False
    assert [o["id"] for o in rows] == [o["id"] for o in reversed(simu.orders("ace"))]
    use(simu, ace_links="drf", ace_count="low")  # next follows the claimed count, as DRF's does
    claimed = len(simu.orders("ace")) // 3
    low = http.get(ACE_LIST, params={"limit": 5, "offset": claimed}, headers=ACE).json()
    assert (low["count"], low["next"], len(low["items"])) == (claimed, None, 5)


# Presets and the standalone simulator ------------------------------------------------------------------------
def test_django_preset_answers_like_a_stock_drf_server(simu: Simulator, http: httpx.Client) -> None:
    """Conventions.django(): comma lists are literal, the slash-less detail redirects, DRF's paginated body."""
    simu.conventions = Conventions.django()
    assert http.get(ACE_LIST, params={"state": "Pending,Paid"}, headers=ACE).json() == {
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }
    key = simu.orders("ace")[0]["id"]
    assert http.get(f"{ACE_LIST}{key}", headers=ACE).status_code == 301
    assert http.get(LSKY_LIST, headers=LSKY).json()["data"]["meta"]["total"] == len(simu.orders("lsky"))


def test_drift_faults_move_rows_of_the_listing_as_served(simu: Simulator, http: httpx.Client) -> None:
    """drift_delete picks its order from the listing the conventions serve: under last, state=Pending&state=Paid
    lists Paid orders, so a Paid order leaves it (and history records the move)."""
    use(simu, ace_multi="last")
    mark = len(simu.history)
    simu.inject("ace", "drift_delete")
    http.get(ACE_LIST, params={"ordering": "-created_at", "state": ["Pending", "Paid"]}, headers=ACE)
    [moved] = simu.history[mark:]
    assert (moved.kind, moved.from_state) == ("state", "Paid") and moved.to_state != "Paid"


def test_standalone_help_lists_every_switch_and_preset(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m orderwatch.simulator --help` names every switch, value and preset."""
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--convention NAME=VALUE" in out and "--preset" in out
    for name, values in Conventions.switches().items():
        assert f"  {name}\n" in out
        assert all(f"    {value} " in out for value in values)
    assert all(f"  {name} " in out for name in Conventions.presets())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--convention", "detail=sideways"], "'sideways' is not a value of ace_detail"),
        (["--convention", "colour=blue"], "no switch 'colour'"),
        (["--preset", "rails"], "invalid choice: 'rails'"),
    ],
)
def test_standalone_refuses_bad_conventions(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    """A bad --convention or --preset is a usage error (exit 2) naming the problem, before anything is served."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert message in capsys.readouterr().err

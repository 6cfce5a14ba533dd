"""The simulator speaks Paddle Billing's transactions API: meta.pagination.next paging, filters, 403s, ids, times."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from orderwatch.simulator.shops import PaddleOptions, ShopSimulator
from tests.shops_support import paddle_all, serve

LIST = "/transactions"


@pytest.fixture
def paddle() -> ShopSimulator:
    """A seeded Paddle account with transactions in every status."""
    sim = ShopSimulator("paddle-transactions", seed=9)
    sim.create(40, state="ready")
    sim.step(100)
    return sim


@pytest.fixture
def http(paddle: ShopSimulator) -> Iterator[httpx.Client]:
    """A client for ``paddle`` served on loopback."""
    with serve(paddle) as client:
        yield client


def get(http: httpx.Client, sim: ShopSimulator, **params: Any) -> httpx.Response:
    """GET the transaction list with the API key."""
    return http.get(LIST, params=params, headers=sim.auth_headers())


def test_list_shape_meta_and_next_url(paddle: ShopSimulator, http: httpx.Client) -> None:
    """{"data", "meta": {"request_id", "pagination"}}: 30 per page, next repeats the query with after=last id."""
    body = get(http, paddle, status="ready,billed,paid,completed,past_due,draft,canceled").json()
    assert set(body) == {"data", "meta"} and re.fullmatch(r"[0-9a-f-]{36}", body["meta"]["request_id"])
    pagination = body["meta"]["pagination"]
    assert pagination["per_page"] == 30 == len(body["data"]) and pagination["has_more"] is True
    assert pagination["estimated_total"] == len(paddle.order_keys())
    query = parse_qs(urlsplit(pagination["next"]).query)
    assert query["after"] == [body["data"][-1]["id"]] and query["status"][0].startswith("ready,billed")
    for txn in body["data"]:
        assert re.fullmatch(r"txn_[0-9a-hjkmnp-tv-z]{26}", txn["id"]) and txn["status"] in paddle.transitions
        assert txn["details"]["totals"]["currency_code"] == "USD" and txn["details"]["totals"]["total"].isdigit()


def test_following_next_lists_every_transaction_once(paddle: ShopSimulator, http: httpx.Client) -> None:
    """Following meta.pagination.next while has_more yields every transaction once, by id descending (newest)."""
    rows = paddle_all(http, paddle, per_page=7)
    assert [t["id"] for t in rows] == sorted(paddle.order_keys(), reverse=True)
    oldest = paddle_all(http, paddle, order_by="created_at[ASC]", per_page=11)
    stamps = [(t["created_at"], t["id"]) for t in oldest]
    assert [t["id"] for t in oldest] == paddle.order_keys() and len(stamps) == len(set(stamps))


def test_ids_sort_like_creation_times(paddle: ShopSimulator) -> None:
    """Paddle ids are ULID-based: sorting by id is sorting by creation (to the millisecond)."""
    orders = paddle.orders()
    by_id = sorted(orders, key=lambda t: t["id"])
    assert [t["id"] for t in by_id] == [t["id"] for t in orders]


def test_the_last_page_still_has_a_next_url(paddle: ShopSimulator, http: httpx.Client) -> None:
    """On the last page has_more is false but next is still a URL: a client must stop on has_more."""
    last = get(http, paddle, order_by="id[ASC]", after=sorted(paddle.order_keys())[-3]).json()["meta"]["pagination"]
    assert last["has_more"] is False and last["next"].startswith("http://")


def test_per_page_above_the_maximum_returns_the_maximum(paddle: ShopSimulator, http: httpx.Client) -> None:
    """per_page=200 returns 30, and meta.pagination.per_page says 30; per_page=0 is a bad_request."""
    body = get(http, paddle, per_page=200).json()
    assert body["meta"]["pagination"]["per_page"] == 30 == len(body["data"])
    bad = get(http, paddle, per_page=0)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    assert bad.json()["error"]["errors"][0]["field"] == "per_page"


def test_page_size_default_and_maximum_are_switchable() -> None:
    """PaddleOptions(default_per_page=50, max_per_page=200): 50 without per_page, 200 at most."""
    sim = ShopSimulator("paddle-transactions", seed=1, options=PaddleOptions(default_per_page=50, max_per_page=200))
    sim.create(250)
    with serve(sim) as http:
        assert len(get(http, sim).json()["data"]) == 50
        assert len(get(http, sim, per_page=500).json()["data"]) == 200


def test_status_and_date_filters_with_operators(paddle: ShopSimulator, http: httpx.Client) -> None:
    """status takes a comma list; updated_at[GT] and created_at[LTE] compare RFC 3339 times."""
    orders = paddle.orders()
    some = paddle_all(http, paddle, status="paid,completed", per_page=9)
    assert {t["id"] for t in some} == {t["id"] for t in orders if t["status"] in {"paid", "completed"}} != set()
    pivot = sorted(t["updated_at"] for t in orders)[len(orders) // 2]
    at = datetime.fromisoformat(pivot)
    later = paddle_all(http, paddle, **{"updated_at[GT]": pivot})
    assert {t["id"] for t in later} == {t["id"] for t in orders if datetime.fromisoformat(t["updated_at"]) > at}
    upto = paddle_all(http, paddle, **{"created_at[LTE]": pivot})
    assert {t["id"] for t in upto} == {t["id"] for t in orders if datetime.fromisoformat(t["created_at"]) <= at}


def test_invalid_filters_are_one_bad_request(paddle: ShopSimulator, http: httpx.Client) -> None:
    """An unknown status, order_by field and malformed date are reported together, each by field."""
    resp = get(http, paddle, status="paid,shipped", order_by="total[ASC]", **{"updated_at[GT]": "yesterday"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["detail"]) == ("request_error", "bad_request", "Invalid request.")
    assert {e["field"] for e in error["errors"]} == {"status", "order_by", "updated_at[GT]"}
    assert error["documentation_url"] == "https://developer.paddle.com/errors/shared/bad_request"
    assert re.fullmatch(r"[0-9a-f-]{36}", resp.json()["meta"]["request_id"])


def test_skip_count_makes_the_total_minus_one(paddle: ShopSimulator, http: httpx.Client) -> None:
    """With the Skip-Count: true header estimated_total is -1."""
    resp = http.get(LIST, headers={**paddle.auth_headers(), "skip-count": "true"})
    assert resp.json()["meta"]["pagination"]["estimated_total"] == -1


def test_auth_failures_are_paddles_403s(paddle: ShopSimulator, http: httpx.Client) -> None:
    """No header, a non-Bearer header and a wrong or revoked key get Paddle's own 403 codes."""
    codes = {}
    for name, headers in (
        ("missing", {}),
        ("malformed", {"authorization": "Token abc"}),
        ("wrong", {"authorization": "Bearer pdl_sdbx_apikey_wrong"}),
    ):
        resp = http.get(LIST, headers=headers)
        assert resp.status_code == 403
        codes[name] = resp.json()["error"]["code"]
    assert codes == {
        "missing": "authentication_missing",
        "malformed": "authentication_malformed",
        "wrong": "invalid_token",
    }
    paddle.revoke()
    revoked = get(http, paddle)
    assert revoked.status_code == 403 and revoked.json()["error"]["detail"] == "Invalid or revoked API key."
    paddle.restore()
    assert get(http, paddle).status_code == 200


def test_detail_is_data_and_meta_and_404(paddle: ShopSimulator, http: httpx.Client) -> None:
    """GET /transactions/{id} is {"data": ..., "meta": {"request_id"}}; an unknown id is 404 not_found."""
    key = paddle.order_keys()[4]
    body = http.get(f"{LIST}/{key}", headers=paddle.auth_headers()).json()
    assert body["data"] == paddle.order(key) and set(body["meta"]) == {"request_id"}
    missing = http.get(f"{LIST}/txn_01hnonexistent0000000000000", headers=paddle.auth_headers())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_timestamps_use_gos_trimmed_fraction(paddle: ShopSimulator) -> None:
    """Times are RFC 3339 in UTC with trailing zeros of the fraction dropped, like Paddle's Go servers."""
    stamps = [t["created_at"] for t in paddle.orders()]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z", s) for s in stamps)


def test_billing_and_payment_fields_follow_the_status() -> None:
    """Billing sets billed_at and an invoice number; paying adds a captured payment; completed is final."""
    sim = ShopSimulator("paddle-transactions", seed=2)
    [key] = sim.create(1)
    sim.move(key, "ready")
    sim.move(key, "billed")
    sim.move(key, "paid")
    sim.move(key, "completed")
    txn = sim.order(key)
    assert txn is not None and txn["billed_at"] and txn["invoice_number"].startswith("325-")
    assert txn["payments"][0]["status"] == "captured" and txn["updated_at"] > txn["created_at"]
    assert sim.transitions["completed"] == ()


def test_include_customer_adds_the_customer_entity(paddle: ShopSimulator, http: httpx.Client) -> None:
    """include=customer adds each transaction's customer (name, e-mail); without it only customer_id is there."""
    plain = get(http, paddle, per_page=3).json()["data"]
    rich = get(http, paddle, per_page=3, include="customer,address").json()["data"]
    assert all("customer" not in t for t in plain)
    assert all(t["customer"]["id"] == t["customer_id"] and "@" in t["customer"]["email"] for t in rich)

"""The simulator speaks Stripe's PaymentIntents list and retrieve: cursors, limits, filters, errors, auth."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from orderwatch.simulator.shops import ShopSimulator, StripeOptions
from tests.shops_support import serve, stripe_all

LIST = "/v1/payment_intents"


@pytest.fixture
def stripe() -> ShopSimulator:
    """A seeded Stripe account with PaymentIntents in every status; many share a creation second."""
    sim = ShopSimulator("stripe-payment-intents", seed=4)
    sim.create(30)
    sim.step(90)
    return sim


@pytest.fixture
def http(stripe: ShopSimulator) -> Iterator[httpx.Client]:
    """A client for ``stripe`` served on loopback."""
    with serve(stripe) as client:
        yield client


def newest_first(sim: ShopSimulator) -> list[str]:
    """PaymentIntent ids newest first; within one second of ``created``, the later-created first."""
    orders = sim.orders()
    rank = {o["id"]: i for i, o in enumerate(orders)}
    return [o["id"] for o in sorted(orders, key=lambda o: (o["created"], rank[o["id"]]), reverse=True)]


def get(http: httpx.Client, sim: ShopSimulator, **params: Any) -> httpx.Response:
    """GET the list with the secret key."""
    return http.get(LIST, params=params, headers=sim.auth_headers())


def test_list_object_shape_and_headers(stripe: ShopSimulator, http: httpx.Client) -> None:
    """The list is {"object": "list", "url", "has_more", "data"} of 10 newest PaymentIntents, with no total."""
    resp = get(http, stripe)
    body = resp.json()
    assert list(body) == ["object", "url", "has_more", "data"]
    assert (body["object"], body["url"], body["has_more"]) == ("list", LIST, True)
    assert [pi["id"] for pi in body["data"]] == newest_first(stripe)[:10]
    assert re.fullmatch(r"req_[0-9A-Za-z]{14}", resp.headers["request-id"])
    assert resp.headers["stripe-version"] == "2024-06-20"
    for pi in body["data"]:
        assert re.fullmatch(r"pi_[0-9A-Za-z]{24}", pi["id"]) and pi["object"] == "payment_intent"
        assert isinstance(pi["created"], int) and isinstance(pi["amount"], int) and pi["currency"] == "usd"
        assert pi["status"] in stripe.transitions and pi["client_secret"].startswith(f"{pi['id']}_secret_")
    assert len({pi["created"] for pi in stripe.orders()}) < len(stripe.orders())


def test_starting_after_pages_through_every_intent_once(stripe: ShopSimulator, http: httpx.Client) -> None:
    """Paging with starting_after=<last id> while has_more yields every PaymentIntent once, newest first."""
    rows = stripe_all(http, stripe, limit=7)
    assert [pi["id"] for pi in rows] == newest_first(stripe)
    assert len(stripe_all(http, stripe, limit=100)) == len(stripe.order_keys())


def test_ending_before_returns_the_page_just_newer(stripe: ShopSimulator, http: httpx.Client) -> None:
    """ending_before=<id> gives the limit intents just newer than it, still newest first, has_more if more exist."""
    order = newest_first(stripe)
    body = get(http, stripe, ending_before=order[12], limit=5).json()
    assert [pi["id"] for pi in body["data"]] == order[7:12] and body["has_more"] is True
    top = get(http, stripe, ending_before=order[3], limit=5).json()
    assert [pi["id"] for pi in top["data"]] == order[:3] and top["has_more"] is False


def test_new_intents_do_not_disturb_cursor_paging(stripe: ShopSimulator, http: httpx.Client) -> None:
    """Intents created between two pages never reach the next page (it continues after the cursor)."""
    first = get(http, stripe, limit=10).json()["data"]
    stripe.create(3)
    second = get(http, stripe, limit=10, starting_after=first[-1]["id"]).json()["data"]
    assert [pi["id"] for pi in first + second] == newest_first(stripe)[3:23]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "This value must be greater than or equal to 1."),
        ("101", "This value must be less than or equal to 100."),
        ("many", "Invalid integer: many"),
    ],
)
def test_limit_outside_1_to_100_is_a_400(stripe: ShopSimulator, http: httpx.Client, value: str, message: str) -> None:
    """limit must be an integer from 1 to 100; otherwise Stripe's invalid_request_error names the parameter."""
    resp = get(http, stripe, limit=value)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["type"], error["code"], error["param"], error["message"]) == (
        "invalid_request_error",
        "parameter_invalid_integer",
        "limit",
        message,
    )
    assert error["doc_url"] == "https://stripe.com/docs/error-codes/parameter-invalid-integer"


def test_the_list_has_no_status_filter(stripe: ShopSimulator, http: httpx.Client) -> None:
    """status is not a list parameter (that is the Search API): Stripe answers 400 parameter_unknown."""
    resp = get(http, stripe, status="succeeded")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["code"], error["param"], error["message"]) == (
        "parameter_unknown",
        "status",
        "Received unknown parameter: status",
    )


def test_cursor_errors(stripe: ShopSimulator, http: httpx.Client) -> None:
    """An unknown cursor id is resource_missing; both cursors at once are refused."""
    missing = get(http, stripe, starting_after="pi_doesnotexist")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "resource_missing"
    assert missing.json()["error"]["message"] == "No such payment_intent: 'pi_doesnotexist'"
    one = stripe.order_keys()[0]
    both = get(http, stripe, starting_after=one, ending_before=one)
    assert both.status_code == 400 and "only specify one of" in both.json()["error"]["message"]


def test_created_range_and_customer_filters(stripe: ShopSimulator, http: httpx.Client) -> None:
    """created[gte]/created[lt] bound the unix creation time; customer keeps that customer's intents."""
    orders = stripe.orders()
    low, high = orders[10]["created"], orders[40]["created"]
    rows = stripe_all(http, stripe, limit=9, **{"created[gte]": low, "created[lt]": high})
    assert {pi["id"] for pi in rows} == {o["id"] for o in orders if low <= o["created"] < high} != set()
    customer = next(o["customer"] for o in orders if o["customer"])
    mine = stripe_all(http, stripe, customer=customer, limit=50)
    assert {pi["id"] for pi in mine} == {o["id"] for o in orders if o["customer"] == customer}
    exact = get(http, stripe, created=low, limit=100).json()["data"]
    assert {pi["id"] for pi in exact} == {o["id"] for o in orders if o["created"] == low}


def test_missing_wrong_and_revoked_keys(stripe: ShopSimulator, http: httpx.Client) -> None:
    """No key, a wrong key (masked but for its last 4) and a revoked (expired) key are Stripe's 401s."""
    missing = http.get(LIST)
    assert missing.status_code == 401 and missing.json()["error"]["message"].startswith(
        "You did not provide an API key"
    )
    wrong = http.get(LIST, headers={"authorization": "Bearer sk_test_abcdefghijklmnop1234"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == 'Basic realm="Stripe"'
    assert wrong.json() == {
        "error": {"message": "Invalid API Key provided: sk_test_****************1234", "type": "invalid_request_error"}
    }
    stripe.revoke()
    expired = get(http, stripe)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "api_key_expired"
    assert stripe.token not in expired.text
    stripe.restore()
    assert get(http, stripe).status_code == 200


def test_basic_auth_with_the_key_as_user(stripe: ShopSimulator, http: httpx.Client) -> None:
    """curl -u sk_...: (the key as the Basic user, empty password) is accepted as Stripe accepts it."""
    assert http.get(LIST, auth=(stripe.token, "")).status_code == 200


def test_retrieve_and_its_404(stripe: ShopSimulator, http: httpx.Client) -> None:
    """GET /v1/payment_intents/{id} is the object; an unknown id is 404 resource_missing on param intent."""
    key = stripe.order_keys()[5]
    assert http.get(f"{LIST}/{key}", headers=stripe.auth_headers()).json() == stripe.order(key)
    missing = http.get(f"{LIST}/pi_nope", headers=stripe.auth_headers())
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "intent"
    other = http.get("/v1/charges", headers=stripe.auth_headers())
    assert other.status_code == 404 and other.json()["error"]["message"].startswith("Unrecognized request URL (GET")


def test_a_stripe_like_api_without_has_more_is_paged_by_full_pages() -> None:
    """With has_more=False the key is absent; a client stopping on a short page still gets everything once."""
    sim = ShopSimulator("stripe-payment-intents", seed=6, options=StripeOptions(has_more=False))
    sim.create(23)
    with serve(sim) as http:
        body = http.get(LIST, headers=sim.auth_headers()).json()
        rows = stripe_all(http, sim, limit=5)
    assert "has_more" not in body and [pi["id"] for pi in rows] == newest_first(sim)


def test_status_changes_update_amounts_and_timestamps() -> None:
    """succeeded sets amount_received; requires_capture sets amount_capturable; canceled sets canceled_at."""
    sim = ShopSimulator("stripe-payment-intents", seed=7)
    paid, held = sim.create(2, state="requires_confirmation")
    sim.move(paid, "succeeded")
    sim.move(held, "requires_capture")
    sim.move(held, "canceled")
    one, two = sim.order(paid), sim.order(held)
    assert one is not None and two is not None
    assert one["amount_received"] == one["amount"] and one["latest_charge"].startswith("ch_")
    assert two["amount_capturable"] == 0 and two["canceled_at"] >= two["created"]
    assert two["cancellation_reason"] == "requested_by_customer" and two["capture_method"] == "manual"
    with pytest.raises(ValueError, match="cannot move succeeded"):
        sim.move(paid, "canceled")
    with pytest.raises(ValueError, match="no way to delete"):
        sim.delete(paid)

"""The generic JSON adapter: dotted paths, paging facts from bodies and headers, Link parsing, origins, auth styles,
messages that name the key, display lines — parsed directly and swept through httpx's MockTransport."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest

from orderwatch.errors import AuthError, MalformedResponse
from orderwatch.sources import PRESETS, JsonApi, JsonPaging, Source, adapter_for, make_source
from orderwatch.sources import json as generic
from orderwatch.sweep import http, paging

BASE = "https://shop.example.com"
TOKEN = "s3cr3t-token"


def api(**paging_keys: Any) -> JsonApi:
    """A generic API at ``/orders`` answering ``{"data": [...]}`` with ``paging_keys``."""
    return JsonApi(
        path="/orders", items="data", key="id", state="status", created="created", paging=JsonPaging(**paging_keys)
    )


def source(the_api: JsonApi, *, token: str | None = TOKEN, auth: str = "bearer", page_size: int = 3) -> Source:
    """A json source on a made-up host (the transport never leaves the process)."""
    return make_source("shop", "json", BASE, token=token, auth=auth, api=the_api, page_size=page_size)


def rows(n: int) -> list[dict[str, Any]]:
    """``n`` orders, newest first."""
    return [{"id": n - i, "status": "paid", "created": f"2024-06-15T10:00:{59 - i:02d}Z"} for i in range(n)]


def parse(src: Source, body: Any, headers: dict[str, str] | None = None) -> Any:
    """One list page of ``body`` as the adapter reads it."""
    return adapter_for(src).parse_list(src, orjson.dumps(body), headers=headers)


def test_dotted_paths_walk_objects_and_list_indexes() -> None:
    """A dotted path finds nested fields and list items; "" is the value itself; a miss is told apart from null."""
    doc = {"a": {"b": [{"c": 1}, {"c": None}]}}
    assert generic.dig(doc, "a.b.0.c") == 1
    assert generic.dig(doc, "a.b.1.c") is None
    assert generic.dig(doc, "") is doc
    assert generic.dig(doc, "a.x") is generic.dig(doc, "a.b.7.c") is generic.dig(doc, "a.b.c.d")


def test_the_next_link_is_found_among_other_links_in_any_spelling() -> None:
    """RFC 8288: the rel="next" target among several links, rel lists, unquoted rel; none when there is no next."""
    value = '<https://x/o?page=1>; rel="prev", <https://x/o?page=3>; rel="next last"'
    assert generic.next_link(value) == "https://x/o?page=3"
    assert generic.next_link("<https://x/o?page_info=abc>; rel=next") == "https://x/o?page_info=abc"
    assert generic.next_link('<https://x/o?page=1>; rel="previous"') is None
    assert generic.next_link(None) is None


def test_origins_compare_scheme_host_and_port_with_default_ports() -> None:
    """Same origin means the same scheme, host and port (443 written or not); anything else differs."""
    assert generic.same_origin("https://Shop.example.com/a?x=1", "https://shop.example.com:443")
    assert not generic.same_origin("https://shop.example.com.evil.net/a", "https://shop.example.com")
    assert not generic.same_origin("http://shop.example.com/a", "https://shop.example.com")
    assert not generic.same_origin("https://shop.example.com:8443/a", "https://shop.example.com")


def test_a_page_reads_totals_from_body_or_header_and_has_more() -> None:
    """``total`` from a body path or ``header:NAME`` (any case), ``has_more`` false ends the list."""
    src = source(api(style="offset", total="header:X-Total-Count", has_more="meta.more"))
    page = parse(src, {"data": rows(3), "meta": {"more": False}}, {"x-total-count": "3"})
    assert page.total == 3 and page.has_next is False
    assert adapter_for(src).next_cursor(0, page) is None and adapter_for(src).says_last(0, page)
    body_total = source(api(style="page", total="meta.count"))
    page = parse(body_total, {"data": rows(3), "meta": {"count": "7"}})
    assert page.total == 7 and page.last_page == 3  # 7 orders, 3 a page, pages 1..3


def test_an_empty_page_that_says_more_follow_is_no_end_of_the_list() -> None:
    """``has_more: true`` on a page without orders is a (retried) malformed answer, never the proven end."""
    src = source(api(style="cursor", has_more="has_more"))
    with pytest.raises(MalformedResponse, match="`has_more` says more follow") as caught:
        parse(src, {"data": [], "has_more": True})
    assert caught.value.retryable
    assert parse(src, {"data": [], "has_more": False}).size == 0


def test_cursor_paging_takes_the_last_key_or_a_body_value_and_a_url_is_followed_as_given() -> None:
    """``last_key``: the next request sends the last item's key; a body cursor that is a URL is fetched as given,
    and one of another origin is refused."""
    src = source(api(style="cursor", cursor_param="starting_after"))
    page = parse(src, {"data": rows(3)})
    assert page.next == "1"
    req = generic.follow(src, page)
    assert ("starting_after", "1") in req.params and req.url is None
    opaque = source(api(style="cursor", cursor="next", cursor_param="after"))
    req = generic.follow(opaque, parse(opaque, {"data": rows(3), "next": "/xY+9=="}))
    assert ("after", "/xY+9==") in req.params and req.url is None  # a base64 cursor, not a path
    by_url = source(api(style="cursor", cursor="meta.next", has_more="meta.more"))
    page = parse(by_url, {"data": rows(3), "meta": {"next": f"{BASE}/orders?after=1&per_page=3", "more": True}})
    assert generic.follow(by_url, page).url == f"{BASE}/orders?after=1&per_page=3"
    last = parse(by_url, {"data": rows(3), "meta": {"next": f"{BASE}/orders?after=1", "more": False}})
    assert last.next is None  # Paddle sends a next URL on the last page too: has_more decides
    evil = parse(by_url, {"data": rows(3), "meta": {"next": "https://evil.example.net/orders?after=1", "more": True}})
    with pytest.raises(MalformedResponse, match="another origin"):
        generic.follow(by_url, evil)


def test_a_path_that_finds_nothing_names_the_key_and_shows_what_the_api_sent() -> None:
    """A wrong items, key or state path is a non-retryable error naming ``sources.NAME.KEY`` and the fields the
    API sent."""
    src = source(api(style="page"))
    with pytest.raises(generic.ShapeError, match=r"sources\.shop\.items: no list at `data`; fields are orders, meta"):
        parse(src, {"orders": [], "meta": {}})
    wrong_state = source(JsonApi(path="/orders", items="data", state="state"))
    with pytest.raises(
        generic.ShapeError, match=r"sources\.shop\.state: no field `state` in the first order; fields are id, status"
    ) as caught:
        parse(wrong_state, {"data": [{"id": 1, "status": "paid"}]})
    assert not caught.value.retryable
    with pytest.raises(generic.ShapeError, match=r"sources\.shop\.items: .* \(a list is at `orders`\)"):
        parse(source(JsonApi(path="/orders", items="")), {"orders": []})


def test_an_error_body_in_any_of_the_presets_shapes_is_an_error_with_its_message() -> None:
    """Shopify's ``errors``, Paddle's ``error.detail``, Stripe's ``error.message`` and WooCommerce's
    ``code``/``message`` each come out as the API's words."""
    assert generic.describe_error(b'{"errors": "[API] Invalid API key"}') == "[API] Invalid API key"
    assert generic.describe_error(b'{"error": {"code": "invalid_token", "detail": "bad"}}') == "invalid_token: bad"
    assert generic.describe_error(b'{"error": {"code": "x", "message": "no"}}') == "x: no"
    assert generic.describe_error(b'{"code": "rest_forbidden", "message": "no"}') == "rest_forbidden: no"


@pytest.mark.parametrize(
    ("preset", "order", "lines"),
    [
        (
            "woocommerce",
            {
                "total": "311.00",
                "currency": "EUR",
                "billing": {"first_name": "Hiro", "last_name": "Tanaka"},
                "payment_method_title": "Direct bank transfer",
            },
            [("Amount", "311.00 EUR"), ("Customer", "Hiro Tanaka"), ("Payment", "Direct bank transfer")],
        ),
        (
            "shopify",
            {
                "total_price": "58.00",
                "currency": "USD",
                "email": "h@example.com",
                "customer": {"first_name": "Hiro", "last_name": "Tanaka"},
                "payment_gateway_names": ["shopify_payments"],
            },
            [("Amount", "58.00 USD"), ("Customer", "Hiro Tanaka h@example.com"), ("Payment", "shopify_payments")],
        ),
        (
            "stripe-payment-intents",
            {"amount": 4999, "currency": "usd", "customer": "cus_1", "payment_method_types": ["card"]},
            [("Amount", "49.99 USD"), ("Customer", "cus_1"), ("Payment", "card")],
        ),
        (
            "paddle-transactions",
            {
                "details": {"totals": {"grand_total": "11662"}},
                "currency_code": "USD",
                "customer_id": "ctm_1",
                "payments": [{"method_details": {"type": "card"}}],
                "collection_mode": "automatic",
            },
            [("Amount", "116.62 USD"), ("Customer", "ctm_1"), ("Payment", "card automatic")],
        ),
    ],
)
def test_each_preset_shows_amount_currency_customer_and_payment(
    preset: str, order: dict[str, Any], lines: list[tuple[str, str]]
) -> None:
    """The display lines of each preset read its API's amount (minor units converted), currency, customer and
    payment method."""
    spec = tuple(PRESETS[preset]["display"].items())
    assert generic.display_lines(spec, order) == lines
    assert generic.display_lines(spec, {})[0] == ("Amount", None)


async def sweep(src: Source, handler: Any) -> Any:
    """A full sweep of ``src`` through ``handler``."""
    async with http.clients(httpx.MockTransport(handler)) as pool:
        return await paging.collect(pool.for_source(src), src)


def link_api(data: list[dict[str, Any]], *, next_host: str = BASE, cycle: bool = False) -> Any:
    """A Link-paged list of ``data`` (page_info = the offset), the next link on ``next_host``; records requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        query = parse_qs(request.url.query.decode())
        at = int(query.get("page_info", ["0"])[0])
        size = int(query["limit"][0])
        nxt = 0 if cycle and at else at + size
        headers = {"Link": f'<{next_host}/orders?page_info={nxt}&limit={size}>; rel="next"'} if nxt < len(data) else {}
        return httpx.Response(200, json={"orders": data[at : at + size]}, headers=headers)

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def link_source(**keys: Any) -> Source:
    """A Link-paged json source."""
    return source(
        JsonApi(path="/orders", items="orders", created="created", paging=JsonPaging(style="link", size_param="limit")),
        **keys,
    )


@pytest.mark.anyio
async def test_a_link_sweep_that_reaches_the_end_proves_absence() -> None:
    """Following every rel="next" to a page without one sees every order once and proves absence."""
    handler = link_api(rows(10))
    obs = await sweep(link_source(), handler)
    assert obs.complete and obs.consistent and obs.end_reached and len(obs.orders) == 10
    assert len(handler.seen) == 4


@pytest.mark.anyio
async def test_a_next_link_to_another_origin_is_not_followed_and_the_sweep_proves_nothing() -> None:
    """A Link pointing to another host is never requested (the token stays home): the sweep is incomplete."""
    handler = link_api(rows(10), next_host="https://evil.example.net")
    obs = await sweep(link_source(), handler)
    assert not obs.complete and not obs.proves_absence and "another origin" in (obs.reason or "")
    assert {r.url.host for r in handler.seen} == {"shop.example.com"}


@pytest.mark.anyio
async def test_a_paging_cycle_ends_the_sweep_incomplete() -> None:
    """A server whose next links lead back to a page already listed makes an incomplete sweep, not an endless one."""
    obs = await sweep(link_source(), link_api(rows(10), cycle=True))
    assert not obs.complete and "cycle" in (obs.reason or "")


@pytest.mark.parametrize(
    ("auth", "where"),
    [
        ("bearer", "authorization"),
        ("basic", "authorization"),
        ("header:X-Api-Key", "x-api-key"),
        ("query:api_key", "query"),
    ],
)
@pytest.mark.anyio
async def test_each_auth_style_sends_the_token_where_it_says_and_nowhere_else(auth: str, where: str) -> None:
    """bearer and basic in Authorization, header:NAME in that header, query:NAME as that parameter (also on a
    followed next link, once); the token appears in no other place of the request."""
    token = "user:s3cr3t-token" if auth == "basic" else "s3cr3t-token"
    handler = link_api(rows(5))
    obs = await sweep(link_source(token=token, auth=auth), handler)
    assert obs.complete
    for request in handler.seen:
        carried = {k: v for k, v in request.headers.items() if token in v or token in _unbasic(v)}
        in_query = parse_qs(request.url.query.decode()).get("api_key", [])
        if where == "query":
            assert in_query == [token] and not carried
        else:
            assert list(carried) == [where] and not in_query
    if auth == "basic":
        assert handler.seen[0].headers["authorization"] == "Basic " + base64.b64encode(token.encode()).decode()


def _unbasic(value: str) -> str:
    try:
        return base64.b64decode(value.removeprefix("Basic "), validate=True).decode()
    except ValueError:
        return ""


@pytest.mark.anyio
async def test_a_rejected_token_is_an_auth_error_with_the_apis_words_and_no_token() -> None:
    """A 401 is not retried; its message carries the API's words with the echoed token masked."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"errors": "[API] Invalid API key or access token (s3cr3t-token)"})

    src = link_source()
    async with http.clients(httpx.MockTransport(handler)) as pool:
        with pytest.raises(AuthError) as caught:
            await paging.collect(pool.for_source(src), src)
    assert "Invalid API key" in caught.value.message and "s3cr3t-token" not in caught.value.message


def test_the_first_request_carries_sort_size_and_the_users_params() -> None:
    """The list request sends the configured sort (unless the user's params set it), the page size clamped to
    ``max_size``, and the page position of its style."""
    src = make_source(
        "shop",
        "json",
        BASE,
        api=JsonApi(
            path="/o", paging=JsonPaging(style="page", sort=(("orderby", "date"), ("order", "desc")), max_size=50)
        ),
        params=(("order", "asc"),),
        page_size=80,
    )
    req = adapter_for(src).list_request(src, 2)
    assert dict(req.params) == {"orderby": "date", "order": "asc", "per_page": "50", "page": "2"}
    assert json.loads(json.dumps(req.params))  # plain pairs


@pytest.mark.anyio
async def test_a_same_origin_redirect_keeps_a_query_parameter_token() -> None:
    """With ``auth = "query:NAME"``, the token is set again on the target of a same-origin redirect."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/orders":
            return httpx.Response(301, headers={"Location": "/v2/orders?limit=3"})
        return httpx.Response(200, json={"orders": rows(2)})

    obs = await sweep(link_source(auth="query:api_key"), handler)
    assert obs.complete and len(obs.orders) == 2
    assert [parse_qs(r.url.query.decode()).get("api_key") for r in seen] == [[TOKEN], [TOKEN]]

"""The pure adapters: requests they build and pages they parse, including the seeds' own samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orderwatch.core.fingerprints import FingerprintIndex, fingerprint, tag_of
from orderwatch.core.model import Page
from orderwatch.errors import ErrorBody, MalformedResponse
from orderwatch.sources import ADAPTERS, Source, acedata, lsky, make_source

DATA = Path(__file__).parents[2] / "data"


def source(kind: str, **extra: Any) -> Source:
    return make_source(name="s", kind=kind, base_url="https://api.example.com", **extra)


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_ace_seed_sample_parses_with_results_key() -> None:
    """The seed document's `{count, results}` answer parses: key `id`, state kept, count read."""
    page = acedata.parse_list(source("acedata"), (DATA / "ace_seed_page.json").read_bytes())
    (order,) = page.orders
    assert (order.key, order.raw_state, order.state, page.total) == ("order-uuid-1234", "Finished", "Finished", 10)


def test_ace_live_items_key_is_accepted() -> None:
    """The live API's `items` list parses like the seed's `results`."""
    page = acedata.parse_list(source("acedata"), body({"count": 1, "items": [{"id": "a", "state": "Pending"}]}))
    assert [o.key for o in page.orders] == ["a"]


def test_lsky_seed_sample_parses_with_canonical_states_and_meta() -> None:
    """The seed's paginator page: 15 orders, unpaid→Pending, cancelled→Cancelled, the contradictory paid order kept."""
    page = lsky.parse_list(source("lsky"), (DATA / "lsky_seed_page.json").read_bytes())
    assert (len(page.orders), page.total, page.last_page, page.current_page, page.first_item) == (15, 16, 2, 1, 1)
    assert page.has_next is True
    states = {o.raw_state: o.state for o in page.orders}
    assert states == {"unpaid": "Pending", "cancelled": "Cancelled", "paid": "Paid"}
    contradictory = next(o for o in page.orders if o.raw_state == "paid")
    assert json.loads(contradictory.raw_json)["canceled_at"] == "2024-10-15T09:15:15.000000Z"


def test_ace_request_sends_ordering_limit_offset_and_user_params_repeated() -> None:
    """Ace requests are newest first, with limit/offset and the user's params (lists repeated)."""
    pairs = (("state", "Pending"), ("state", "Paid"), ("pay_way", "Stripe"))
    src = source("acedata", params=pairs, page_size=50)
    req = acedata.list_request(src, 100)
    assert req.path == "/api/v1/orders/"
    assert req.params[:3] == (("limit", "50"), ("offset", "100"), ("ordering", "-created_at"))
    assert set(req.params[3:]) == {("state", "Pending"), ("state", "Paid"), ("pay_way", "Stripe")}
    comma = acedata.list_request(source("acedata", params=(("state", "Pending,Paid"),)), 0)
    assert ("state", "Pending,Paid") in comma.params


def test_lsky_request_always_sorts_and_keeps_user_query_tokens() -> None:
    """Lsky requests send q=sort:latest (added to the user's own q tokens) and Accept: application/json."""
    req = lsky.list_request(source("lsky", params=(("q", "status:=:unpaid,paid"),)), 3)
    assert dict(req.params)["q"] == "status:=:unpaid,paid sort:latest"
    assert dict(req.params)["page"] == "3"
    assert ("Accept", "application/json") in req.headers
    own_sort = lsky.list_request(source("lsky", params=(("q", "sort:oldest"),)), 1)
    assert dict(own_sort.params)["q"] == "sort:oldest"


def test_ace_paging_advances_by_items_received_not_by_limit() -> None:
    """A clamped page of 7 when 100 were asked moves the offset by 7; an empty page ends the list, and the count
    says which page is the last (the sweep then checks the page after it)."""
    page = Page(orders=tuple(range(7)), total=20)  # type: ignore[arg-type]
    assert acedata.next_cursor(0, page) == 7 and not acedata.says_last(0, page)
    assert acedata.next_cursor(14, page) == 21 and acedata.says_last(14, page)
    assert acedata.next_cursor(0, Page(orders=(), total=20)) is None
    assert acedata.next_cursor(0, Page(orders=tuple(range(7)), total=None)) == 7  # type: ignore[arg-type]
    assert not acedata.says_last(0, Page(orders=tuple(range(7)), total=None))  # type: ignore[arg-type]


def test_lsky_paging_says_last_at_last_page_or_missing_next_link() -> None:
    """Lsky's last page is meta.last_page's, or the one whose links.next is null without meta; an empty page ends
    the list whatever they say."""
    some = tuple(range(3))
    assert lsky.next_cursor(1, Page(orders=some, last_page=2)) == 2  # type: ignore[arg-type]
    assert not lsky.says_last(1, Page(orders=some, last_page=2))  # type: ignore[arg-type]
    assert lsky.says_last(2, Page(orders=some, last_page=2))  # type: ignore[arg-type]
    assert lsky.says_last(1, Page(orders=some, has_next=False))  # type: ignore[arg-type]
    assert lsky.next_cursor(1, Page(orders=())) is None


def test_a_plan_never_lists_more_pages_than_asked_whatever_the_count_says() -> None:
    """A count of 10**12 plans at most the pages asked for, built lazily (no list of a billion cursors)."""
    page = Page(orders=tuple(range(100)), total=10**12, last_page=10**10)  # type: ignore[arg-type]
    assert acedata.plan(page, 0, 999) == list(range(100, 100_000, 100))
    assert lsky.plan(page, 1, 999) == list(range(2, 1001))


def test_a_page_leaves_out_the_orders_skip_calls_unchanged_and_still_pages_by_all_it_listed() -> None:
    """skip is asked (key, canonical state, canonical JSON) of every item, integer keys too; the items it takes are
    left out of orders but counted in the page's size, which paging goes by (Ace) and tells an empty page (Lsky)."""
    items = [{"id": "a", "state": "paid", "n": 1}, {"id": 7, "state": "Pending"}, {"id": "b", "state": "Paid"}]
    built = acedata.parse_list(source("acedata"), body({"count": 10, "items": items})).orders
    asked: list[tuple[str, str, bytes]] = []

    def skip(key: str, state: str, blob: bytes) -> bool:
        asked.append((key, state, bytes(blob)))
        return key != "b"

    page = acedata.parse_list(source("acedata"), body({"count": 10, "items": items}), skip=skip)
    assert asked == [(o.key, o.state, o.raw_json) for o in built] and [k for k, _, _ in asked] == ["a", "7", "b"]
    assert [o.key for o in page.orders] == ["b"] and (page.skipped, page.size) == (2, 3)
    assert acedata.next_cursor(0, page) == 3 and acedata.plan(page, 0, 100) == [3, 6, 9]
    lsky_page = {
        "status": "success",
        "data": {"data": [{"trade_no": "t1", "status": "paid"}], "meta": {"last_page": 2}},
    }
    everything_known = lsky.parse_list(source("lsky"), body(lsky_page), skip=lambda *_: True)
    assert everything_known.orders == () and everything_known.size == 1
    assert lsky.next_cursor(1, everything_known) == 2 and lsky.plan(everything_known, 1, 100) == [2]


@pytest.mark.parametrize(
    ("kind", "answer", "error", "message"),
    [
        ("acedata", b"<html><body>502 Bad Gateway</body></html>", MalformedResponse, "HTML"),
        ("acedata", b'{"count": 3, "items": [{"id": "a", "sta', MalformedResponse, "not valid JSON"),
        ("acedata", b"", MalformedResponse, "empty answer"),
        ("acedata", b"[1, 2]", MalformedResponse, "JSON list"),
        ("acedata", b'{"count": 1}', MalformedResponse, "no 'items' or 'results'"),
        ("acedata", b'{"items": {"id": "a"}}', MalformedResponse, "expected a list"),
        ("acedata", b'{"items": [{"state": "Paid"}]}', MalformedResponse, "no usable 'id'"),
        ("acedata", b'{"items": [{"id": "a", "state": null}]}', MalformedResponse, "no usable 'state'"),
        ("acedata", b'{"items": ["a"]}', MalformedResponse, "expected an object"),
        ("acedata", b'{"error": {"code": "token_expired", "message": "x"}}', ErrorBody, "token_expired"),
        ("lsky", b'{"status": "error", "message": "Too many requests"}', ErrorBody, "Too many requests"),
        ("lsky", b'{"status": "success", "data": {"data": null}}', MalformedResponse, "'data.data'"),
        ("lsky", b'{"status": "success", "data": []}', MalformedResponse, "no 'data' object"),
        ("lsky", b'{"message": "Unauthenticated."}', ErrorBody, "Unauthenticated"),
    ],
)
def test_malformed_answers_are_typed_errors_with_a_reason(
    kind: str, answer: bytes, error: type[Exception], message: str
) -> None:
    """Every broken shape raises a typed error whose message says what was wrong — never a crash."""
    with pytest.raises(error, match=message):
        ADAPTERS[kind].parse_list(source(kind), answer)


def test_odd_data_is_kept_numbers_as_strings_unicode_big_ints_and_numeric_states() -> None:
    """Numeric keys/states become text, unknown states stay as they are, odd values are stored untouched."""
    src = source("acedata", states={"0": "Pending"})
    doc = {
        "count": "3",
        "items": [
            {"id": 7, "state": 0, "price": "49.99"},
            {"id": "ü-1", "state": "OnHold", "tags": ["订单"], "amount": 2**70},
            {"id": "b", "state": "pending", "metadata": None},
        ],
    }
    page = acedata.parse_list(src, body(doc))
    assert page.total == 3
    assert [(o.key, o.raw_state, o.state) for o in page.orders] == [
        ("7", "0", "Pending"),
        ("ü-1", "OnHold", "OnHold"),
        ("b", "pending", "Pending"),
    ]
    assert json.loads(page.orders[1].raw_json)["amount"] == 2**70


@pytest.mark.parametrize(
    ("number", "exact"),
    [
        (2**64, 2**64),  # just beyond unsigned 64 bits
        (-(2**63) - 1, -(2**63) - 1),  # 19 digits, just beyond signed 64 bits
        (-9999999999999999999, -9999999999999999999),
    ],
)
def test_integers_beyond_64_bits_stay_exact_wherever_they_stand(number: int, exact: int) -> None:
    """A 19-digit-or-longer integer as a value, in a list, or after no space is parsed exactly, not rounded."""
    src = source("acedata")
    for text in (
        f'{{"items": [{{"id": "a", "state": "Paid", "n": {number}}}]}}',
        f'{{"items":[{{"id":"a","state":"Paid","n":[1,{number}]}}]}}',
    ):
        raw = json.loads(acedata.parse_list(src, text.encode()).orders[0].raw_json)
        assert raw["n"] == exact or raw["n"] == [1, exact], text


@pytest.mark.parametrize("kind", ["acedata", "lsky"])
def test_a_sweep_that_skips_unchanged_orders_still_parses_big_integers_exactly(kind: str) -> None:
    """With a skip test the page is screened for big integers only when an order is built from it (or cannot be):
    a stored order holding one is still recognised unchanged (its rounded first reading is a miss, the exact one a
    hit), and a new order holding one, even as its key, keeps it exactly."""
    src = source(kind)
    key_field, state_field = ("id", "state") if kind == "acedata" else ("trade_no", "status")

    def answer(*items: dict[str, Any]) -> bytes:
        if kind == "acedata":
            return body({"count": len(items), "items": list(items)})
        return body({"status": "success", "data": {"data": list(items), "meta": {"total": len(items), "last_page": 1}}})

    stored = {key_field: "a", state_field: "paid", "n": 2**70}
    new = {key_field: "b", state_field: "paid", "n": -(2**64)}
    plain = {key_field: "c", state_field: "paid", "n": 1}
    known = ADAPTERS[kind].parse_list(src, answer(stored, plain)).orders
    index = FingerprintIndex.build([(tag_of(o.key), fingerprint(o.raw_json, o.state)) for o in known], len(known))
    page = ADAPTERS[kind].parse_list(src, answer(stored, plain), skip=index.unchanged)
    assert (page.orders, page.skipped) == ((), 2) and index.all_seen
    page = ADAPTERS[kind].parse_list(src, answer(plain, new, stored), skip=index.unchanged)
    assert [o.key for o in page.orders] == ["b"] and page.skipped == 2
    assert json.loads(page.orders[0].raw_json)["n"] == -(2**64)
    big_key = {key_field: 2**70, state_field: "paid"}  # read as a float at first: no usable key, until screened
    page = ADAPTERS[kind].parse_list(src, answer(big_key, plain), skip=index.unchanged)
    assert [o.key for o in page.orders] == [str(2**70)] and page.skipped == 1


def test_digit_strings_are_not_taken_for_big_integers() -> None:
    """A key made of 19+ digits inside a string (Lsky trade_no) stays a string; the screen does not flag it."""
    from orderwatch.sources._parse import has_long_int

    text = b'{"data": {"data": [{"trade_no": "2024061518000095138_002", "status": "paid"}]}}'
    assert not has_long_int(text)
    assert has_long_int(b'{"n": 12345678901234567890}') and has_long_int(b'{"n":[0,-1234567890123456789]}')
    assert not has_long_int(b'{"n": 123456789012345678, "f": 0.12345678901234567890123}')
    order = lsky.parse_list(source("lsky"), text).orders[0]
    assert order.key == "2024061518000095138_002"


def test_content_hash_ignores_key_order_but_not_values() -> None:
    """The same order with keys in another order hashes the same; a changed field hashes differently."""
    src = source("acedata")
    a = acedata.parse_list(src, b'{"items": [{"id": "a", "state": "Paid", "price": 1}]}').orders[0]
    b = acedata.parse_list(src, b'{"items": [{"price": 1, "state": "Paid", "id": "a"}]}').orders[0]
    c = acedata.parse_list(src, b'{"items": [{"price": 2, "state": "Paid", "id": "a"}]}').orders[0]
    assert a.digest == b.digest != c.digest


def test_detail_requests_and_answers() -> None:
    """Detail paths escape the key; Ace accepts a bare order, Lsky the success envelope."""
    assert acedata.detail_request(source("acedata"), "a/b").path == "/api/v1/orders/a%2Fb/"
    fallback = acedata.detail_fallback(source("acedata"), "a/b")
    assert fallback is not None and fallback.path == "/api/v1/orders/a%2Fb"
    assert lsky.detail_request(source("lsky"), "2024_002").path == "/api/v2/user/orders/2024_002"
    assert acedata.parse_detail(source("acedata"), b'{"id": "a", "state": "Paid"}').state == "Paid"
    order = lsky.parse_detail(source("lsky"), b'{"status": "success", "data": {"trade_no": "t", "status": "paid"}}')
    assert (order.key, order.state) == ("t", "Paid")


def test_state_filters_use_the_apis_own_spellings() -> None:
    """Filters send raw states as each API spells them: Ace `Pending`, Lsky `paid`, a user's own `0` as written."""
    from orderwatch.sweep.local import raw_states

    assert raw_states(source("acedata"), {"Pending", "Paid"}) == ["Paid", "Pending"]
    assert raw_states(source("lsky"), {"Paid", "Cancelled"}) == ["cancelled", "paid"]
    assert raw_states(source("acedata", states={"0": "Pending"}), {"Pending"}) == ["0", "Pending"]


def test_a_state_only_the_default_mapping_knows_is_never_asked_for() -> None:
    """Ace has no ``cancelled``: its default mapping takes one in, but no filter asks for it (a server whose filter
    knows its states would answer 400); a user's own mapping to Cancelled is asked for as written."""
    from orderwatch.sweep.local import raw_states

    assert raw_states(source("acedata"), {"Cancelled", "Refunded"}) == ["Refunded"]
    assert raw_states(source("acedata", states={"void": "Cancelled"}), {"Cancelled"}) == ["void"]


def test_a_state_is_asked_for_as_the_api_spelled_it_in_its_answers() -> None:
    """A user's mapping is matched whatever its case, but filters send the spelling the answers held (``Voided``),
    and a default-only name the API did send (Ace ``Cancelled``) is asked for after all."""
    from orderwatch.sweep.local import raw_states

    voided = source("acedata", states={"voided": "Cancelled"})
    assert raw_states(voided, {"Cancelled"}, seen=["Voided", "Pending"]) == ["Voided"]
    assert raw_states(source("acedata"), {"Cancelled"}, seen=["Cancelled"]) == ["Cancelled"]

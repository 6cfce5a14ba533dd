"""Lsky Pro+ 2.x ``GET /api/v2/user/orders``: Laravel paginator, ``page``/``per_page``.

Body ``{status, message, data: {data, links, meta}, time}``. Errors may come as HTTP 200 with ``status: "error"``.
There is no default ORDER BY, so every request sends ``q=sort:latest``. ``q`` is space-separated tokens:
``status:=:paid`` filters (one status per request), and a bare word matches ``trade_no``, which starts with the
order's creation time (``YmdHis``): a digit prefix is a part of the list the server counts (see ``Partition``).
Pure: builds requests, parses bodies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from orderwatch.core.model import Order, Page
from orderwatch.errors import ErrorBody, MalformedResponse
from orderwatch.sources import _parse
from orderwatch.sources.spec import Adapter, Part, Partition, Request, Skip, Source

RAW_STATES: Final = ("unpaid", "paid", "cancelled")  # as the API spells them
DEFAULT_STATES: Final[Mapping[str, str]] = {"unpaid": "Pending", "paid": "Paid", "cancelled": "Cancelled"}
OPEN_STATES: Final = ("Pending",)  # paid and cancelled are final (cancelled orders may vanish: full sweeps)
KEY_FIELD: Final = "trade_no"
STATE_FIELD: Final = "status"
CREATED_FIELD: Final = "created_at"
_DIGITS: Final = "0123456789"
LIST_PATH: Final = "/api/v2/user/orders"
_HEADERS: Final = (("Accept", "application/json"),)
_OURS: Final = frozenset({"page", "per_page"})


def first_cursor() -> int:
    """Laravel pages are numbered from 1."""
    return 1


def _query(src: Source, states: Sequence[str], part: Part | None) -> str:
    """The ``q`` parameter: the user's tokens, a ``status:=:`` filter for ``states``, the part's word, and
    ``sort:latest`` unless the user chose a sort."""
    tokens = [t for k, v in src.params if k == "q" for t in v.split()]
    if states:
        tokens = [t for t in tokens if not t.startswith("status:")]
        tokens.append("status:=:" + ",".join(states))
    if part is not None and part.lo is not None:
        tokens.append(part.lo)
    if not any(t.startswith("sort:") for t in tokens):
        tokens.append("sort:latest")
    return " ".join(tokens)


def list_request(
    src: Source,
    cursor: int,
    *,
    page_size: int | None = None,
    states: Sequence[str] = (),
    part: Part | None = None,
) -> Request:
    """The list request for page ``cursor``; ``states`` (raw statuses) filters it, ``part`` (a trade-number
    prefix) narrows it."""
    user = tuple((k, v) for k, v in src.params if k not in _OURS and k != "q")
    size = min(page_size or src.page_size, 9999)
    params = (("page", str(cursor)), ("per_page", str(size)), ("q", _query(src, states, part)), *user)
    return Request(LIST_PATH, params, _HEADERS)


def plan(first: Page, cursor: int, limit: int) -> list[int]:
    """The numbers of (at most ``limit``) remaining pages, from ``meta.last_page`` (for fetching them
    concurrently)."""
    if not first.size or first.last_page is None:
        return []
    return _parse.plan_range(cursor + 1, first.last_page + 1, 1, limit)


def next_cursor(cursor: int, page: Page) -> int | None:
    """The next page number; None after an empty page."""
    return cursor + 1 if page.size else None


def says_last(cursor: int, page: Page) -> bool:
    """True when ``meta.last_page`` or a null ``links.next`` says no page follows this one."""
    if page.last_page is not None:
        return cursor >= page.last_page
    return page.has_next is False


def _unwrap(src: Source, doc: object) -> Mapping[str, object]:
    """The ``data`` member of a success envelope; ``ErrorBody`` for ``status != "success"``."""
    if not isinstance(doc, Mapping):
        raise MalformedResponse(src.name, f"answer is a JSON {type(doc).__name__}, expected an object")
    status = doc.get("status")
    if status is not None and status != "success":
        message = _parse.error_text(doc) or "no message"
        raise ErrorBody(src.name, f"the API answered status {status!r}: {message}")
    data = doc.get("data")
    if not isinstance(data, Mapping):
        if status is None and _parse.error_text(doc):
            raise ErrorBody(src.name, f"the API answered with an error: {_parse.error_text(doc)}")
        raise MalformedResponse(src.name, f"answer has no 'data' object (keys: {sorted(doc)[:8]})")
    return data


def parse_list(src: Source, body: bytes, *, skip: Skip | None = None, headers: Mapping[str, str] | None = None) -> Page:
    """One list page; ``MalformedResponse``/``ErrorBody`` when the body is not the paginator envelope."""
    return _parse.parse_page(src, body, skip, lambda doc, skip: _page(src, doc, skip))


def _page(src: Source, doc: object, skip: Skip | None) -> Page:
    data = _unwrap(src, doc)
    items = data.get("data")
    if not isinstance(items, list):
        raise MalformedResponse(src.name, f"'data.data' is a {type(items).__name__}, expected a list")
    meta = data.get("meta")
    meta = meta if isinstance(meta, Mapping) else data  # Laravel's simple paginator puts meta at the top level
    links = data.get("links")
    has_next = None
    if isinstance(links, Mapping) and "next" in links:
        has_next = bool(links.get("next"))
    elif "next_page_url" in data:
        has_next = bool(data.get("next_page_url"))
    orders, skipped = _parse.build_orders(src, items, KEY_FIELD, STATE_FIELD, skip, CREATED_FIELD)
    newest_first, newest, oldest = _parse.time_order(items, CREATED_FIELD)
    ends = _parse.ends(items, KEY_FIELD)
    return Page(
        orders=orders,
        total=_parse.int_or_none(meta.get("total")),
        last_page=_parse.int_or_none(meta.get("last_page")),
        current_page=_parse.int_or_none(meta.get("current_page")),
        first_item=_parse.int_or_none(meta.get("from")),
        has_next=has_next,
        skipped=skipped,
        newest_first=newest_first,
        newest=newest,
        oldest=oldest,
        ends=ends,
    )


def detail_request(src: Source, key: str) -> Request:
    """The detail request for one order."""
    return Request(f"{LIST_PATH}/{quote(key, safe='')}", (), _HEADERS)


def parse_detail(src: Source, body: bytes) -> Order:
    """The order of a detail answer ``{status, data: {...order...}}``."""
    doc = _unwrap(src, _parse.decode(src, body))
    return _parse.build_order(src, doc, KEY_FIELD, STATE_FIELD, "the detail answer", CREATED_FIELD)


def filters_state(params: Sequence[tuple[str, str]]) -> bool:
    """True when the user's own ``q`` already filters by status (an open-state filter would replace theirs)."""
    return any(k == "q" and "status:" in v for k, v in params)


def display(order: Any) -> list[tuple[str, str | None]]:
    """The amount (yuan), the product bought, and the payment method."""
    amount = _parse.text_at(order, "amount")
    product = _parse.text_at(order, "product", "name") or _parse.text_at(order, "snapshot", "name")
    return [
        ("Amount", f"{amount} CNY" if amount else None),
        ("Product", product),
        ("Payment", _parse.text_at(order, "pay_method")),
    ]


def _prefix(word: str) -> Part:
    """The trade numbers that start with ``word``, as an interval."""
    return Part(word, word[:-1] + chr(ord(word[-1]) + 1))


def split(part: Part, keys: Sequence[str]) -> list[Part]:
    """``part`` cut into the ten trade-number prefixes one digit longer; the whole list into the prefixes one digit
    longer than the known keys' common prefix (a bare word too short matches nearly every trade number). [] when
    the prefix is as long as the keys' digits."""
    if part.lo is None:
        if not keys:
            return []
        first, last = keys[0], keys[-1]  # sorted: their common prefix is everyone's
        same = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), len(first))
        word = first[: min(same, len(last), _digit_run(first))]
    else:
        word = part.lo
    if len(word) >= max((_digit_run(k) for k in keys), default=0):
        return []
    return [_prefix(word + d) for d in _next_digits(word)]


def _next_digits(word: str) -> str:
    """The digits that can follow ``word`` in a trade number, whose first 14 digits are a time (``YmdHis``)."""
    at = len(word)
    fields = {
        4: "01",  # month, tens
        5: "123456789" if word[4:5] == "0" else "012",
        6: "0123",  # day, tens
        7: "123456789" if word[6:7] == "0" else "01" if word[6:7] == "3" else _DIGITS,
        8: "012",  # hour, tens
        9: "0123" if word[8:9] == "2" else _DIGITS,
        10: "012345",  # minute, tens
        12: "012345",  # second, tens
    }
    return fields.get(at, _DIGITS)


def _digit_run(text: str) -> int:
    """How many digits ``text`` starts with."""
    return len(text) - len(text.lstrip(_DIGITS))


PARTITION: Final = Partition(
    by="key",
    fanout=10,
    exact=False,
    split=split,
    admits=lambda part, key: part.lo is None or (key is not None and part.lo in key),
    usable=lambda params: not any(k == "q" and any(not t.count(":") for t in v.split()) for k, v in params),
    above=lambda created: None,  # a search word is a prefix, never "after"
)

ADAPTER: Final = Adapter(
    kind="lsky",
    raw_states=RAW_STATES,
    default_states=DEFAULT_STATES,
    open_states=OPEN_STATES,
    key_field=KEY_FIELD,
    state_field=STATE_FIELD,
    first_cursor=first_cursor,
    list_request=list_request,
    plan=plan,
    next_cursor=next_cursor,
    says_last=says_last,
    parse_list=parse_list,
    detail_request=detail_request,
    detail_fallback=lambda src, key: None,
    parse_detail=parse_detail,
    describe_error=_parse.describe_error,
    created_at=_parse.created_at,
    filters_state=filters_state,
    display=display,
    partition=PARTITION,
)

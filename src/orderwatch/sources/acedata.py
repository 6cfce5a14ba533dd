"""Ace Data Cloud ``GET /api/v1/orders/`` (seed 000): Django REST style, ``limit``/``offset``, ``{count, items}``.

The live API answers ``items``; older documents say ``results``: both are accepted. Paging advances the offset by
the number of items received, because the server may clamp ``limit`` silently. Pure: builds requests, parses bodies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from orderwatch.core.model import CANONICAL_STATES, Order, Page
from orderwatch.errors import ErrorBody, MalformedResponse
from orderwatch.sources import _parse
from orderwatch.sources.spec import Adapter, Request, Skip, Source

RAW_STATES: Final = ("Pending", "Paid", "Finished", "Expired", "Failed", "Refunded")  # as the API spells them
DEFAULT_STATES: Final[Mapping[str, str]] = {s.casefold(): s for s in CANONICAL_STATES}
OPEN_STATES: Final = ("Pending", "Paid")  # Finished → Refunded is rare: seen at the next full sweep
KEY_FIELD: Final = "id"
STATE_FIELD: Final = "state"
LIST_PATH: Final = "/api/v1/orders/"
_HEADERS: Final = (("Accept", "application/json"),)
_OURS: Final = frozenset({"limit", "offset"})


def first_cursor() -> int:
    """Sweeps start at offset 0."""
    return 0


def list_request(src: Source, cursor: int, *, page_size: int | None = None, states: Sequence[str] = ()) -> Request:
    """The list request at offset ``cursor``, newest first unless the user's params choose an ordering.

    ``states`` (raw states) filters the list: repeated ``state`` parameters, or one comma-separated value when the
    source sets ``multi_value = "comma"``.
    """
    user = tuple((k, v) for k, v in src.params if k not in _OURS and not (states and k == "state"))
    ordering = () if any(k == "ordering" for k, _ in user) else (("ordering", "-created_at"),)
    size = page_size or src.page_size
    wanted: tuple[tuple[str, str], ...] = ()
    if states:
        wanted = (("state", ",".join(states)),) if src.multi_value == "comma" else tuple(("state", s) for s in states)
    params = (("limit", str(size)), ("offset", str(cursor)), *ordering, *wanted, *user)
    return Request(LIST_PATH, params, _HEADERS)


def plan(first: Page, cursor: int) -> list[int]:
    """The offsets of the remaining pages of a sweep, from the first page's size and ``count`` (for fetching them
    concurrently); empty when the API did not say how many there are."""
    size = first.size
    if not size or first.total is None:
        return []
    return list(range(cursor + size, first.total, size))


def next_cursor(cursor: int, page: Page, page_size: int) -> int | None:
    """The next offset: advanced by the items received; None at an empty page or once ``count`` is reached."""
    received = page.size
    if received == 0:
        return None
    nxt = cursor + received
    if page.total is not None and nxt >= page.total:
        return None
    return nxt


def parse_list(src: Source, body: bytes, *, skip: Skip | None = None) -> Page:
    """One list page; ``MalformedResponse``/``ErrorBody`` when the body is not ``{count, items|results}``."""
    return _parse.parse_page(src, body, skip, lambda doc, skip: _page(src, doc, skip))


def _page(src: Source, doc: object, skip: Skip | None) -> Page:
    if not isinstance(doc, Mapping):
        raise MalformedResponse(src.name, f"answer is a JSON {type(doc).__name__}, expected an object")
    items = doc.get("items", doc.get("results"))
    if items is None:
        message = _parse.error_text(doc)
        if message:
            raise ErrorBody(src.name, f"the API answered with an error: {message}")
        raise MalformedResponse(src.name, f"answer has no 'items' or 'results' list (keys: {sorted(doc)[:8]})")
    if not isinstance(items, list):
        raise MalformedResponse(src.name, f"'items' is a {type(items).__name__}, expected a list")
    orders, skipped = _parse.build_orders(src, items, KEY_FIELD, STATE_FIELD, skip)
    return Page(orders=orders, total=_parse.int_or_none(doc.get("count")), skipped=skipped)


def detail_request(src: Source, key: str) -> Request:
    """The detail request for one order."""
    return Request(f"{LIST_PATH}{quote(key, safe='')}", (), _HEADERS)


def parse_detail(src: Source, body: bytes) -> Order:
    """The order of a detail answer (bare, or wrapped in ``data``)."""
    doc = _parse.decode(src, body)
    if isinstance(doc, Mapping) and KEY_FIELD not in doc and isinstance(doc.get("data"), Mapping):
        doc = doc["data"]
    return _parse.build_order(src, doc, KEY_FIELD, STATE_FIELD, "the detail answer")


def filters_state(params: Sequence[tuple[str, str]]) -> bool:
    """True when the user's own params filter by state (an open-state filter would replace theirs)."""
    return any(k == "state" for k, _ in params)


def display(order: Any) -> list[tuple[str, str | None]]:
    """Price (USD) with the credits bought, and the payment method."""
    price, amount = _parse.text_at(order, "price"), _parse.text_at(order, "amount")
    credits = f" ({amount} credits)" if amount else ""
    shown = f"{price} USD{credits}" if price is not None else None
    return [("Amount", shown), ("Payment", _parse.text_at(order, "pay_way"))]


ADAPTER: Final = Adapter(
    kind="acedata",
    raw_states=RAW_STATES,
    default_states=DEFAULT_STATES,
    open_states=OPEN_STATES,
    key_field=KEY_FIELD,
    state_field=STATE_FIELD,
    first_cursor=first_cursor,
    list_request=list_request,
    plan=plan,
    next_cursor=next_cursor,
    parse_list=parse_list,
    detail_request=detail_request,
    parse_detail=parse_detail,
    describe_error=_parse.describe_error,
    created_at=_parse.created_at,
    filters_state=filters_state,
    display=display,
)

"""Ace Data Cloud ``GET /api/v1/orders/``: Django REST style, ``limit``/``offset``, ``{count, items}``.

The live API answers ``items``; older documents say ``results``: both are accepted. Paging advances the offset by
the number of items received, because the server may clamp ``limit`` silently. Filters are sent one value per
request (``state=Paid``): servers read multi-valued filters in incompatible ways. The list can be cut into parts
by creation time (``created_at_from``/``created_at_to``), whose boundaries never sit on a known order's time, so a
server that reads the upper bound as inclusive and one that reads it as exclusive count the same orders.
Pure: builds requests, parses bodies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final
from urllib.parse import quote

from orderwatch import clock
from orderwatch.core.model import CANONICAL_STATES, Order, Page
from orderwatch.errors import ErrorBody, MalformedResponse
from orderwatch.sources import _parse
from orderwatch.sources.spec import Adapter, Part, Partition, Request, Skip, Source

RAW_STATES: Final = ("Pending", "Paid", "Finished", "Expired", "Failed", "Refunded")  # as the API spells them
DEFAULT_STATES: Final[Mapping[str, str]] = {s.casefold(): s for s in CANONICAL_STATES}
OPEN_STATES: Final = ("Pending", "Paid")  # orders that will still move; settled ones are checked by counts
KEY_FIELD: Final = "id"
STATE_FIELD: Final = "state"
CREATED_FIELD: Final = "created_at"
LIST_PATH: Final = "/api/v1/orders/"
_HEADERS: Final = (("Accept", "application/json"),)
_OURS: Final = frozenset({"limit", "offset"})
_RANGE: Final = frozenset({"created_at_from", "created_at_to"})
_TICK: Final = timedelta(microseconds=1)


def first_cursor() -> int:
    """Sweeps start at offset 0."""
    return 0


def list_request(
    src: Source,
    cursor: int,
    *,
    page_size: int | None = None,
    states: Sequence[str] = (),
    part: Part | None = None,
) -> Request:
    """The list request at offset ``cursor``, newest first unless the user's params choose an ordering.

    ``states`` (raw states) filters the list: one state per request is what every server reads alike (the user's
    own multi-valued params are sent as ``multi_value`` says). ``part`` narrows it to a creation-time range.
    """
    user = tuple((k, v) for k, v in src.params if k not in _OURS and not (states and k == "state"))
    ordering = () if any(k == "ordering" for k, _ in user) else (("ordering", "-created_at"),)
    size = page_size or src.page_size
    wanted: tuple[tuple[str, str], ...] = ()
    if states:
        wanted = (("state", ",".join(states)),) if src.multi_value == "comma" else tuple(("state", s) for s in states)
    bounds: tuple[tuple[str, str], ...] = ()
    if part is not None:
        bounds = tuple((k, v) for k, v in (("created_at_from", part.lo), ("created_at_to", part.hi)) if v is not None)
    params = (("limit", str(size)), ("offset", str(cursor)), *ordering, *wanted, *bounds, *user)
    return Request(LIST_PATH, params, _HEADERS)


def plan(first: Page, cursor: int, limit: int) -> list[int]:
    """The offsets of (at most ``limit``) remaining pages of a sweep, from the first page's size and ``count`` (for
    fetching them concurrently); empty when the API did not say how many there are."""
    if not first.size or first.total is None:
        return []
    return _parse.plan_range(cursor + first.size, first.total, first.size, limit)


def next_cursor(cursor: int, page: Page) -> int | None:
    """The next offset, advanced by the items received (servers clamp ``limit``); None after an empty page."""
    return cursor + page.size if page.size else None


def says_last(cursor: int, page: Page) -> bool:
    """True when ``count`` says nothing comes after this page."""
    return page.total is not None and cursor + page.size >= page.total


def parse_list(src: Source, body: bytes, *, skip: Skip | None = None, headers: Mapping[str, str] | None = None) -> Page:
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
    orders, skipped = _parse.build_orders(src, items, KEY_FIELD, STATE_FIELD, skip, CREATED_FIELD)
    newest_first, newest, oldest = _parse.time_order(items, CREATED_FIELD)
    ends = _parse.ends(items, KEY_FIELD)
    return Page(
        orders=orders,
        total=_parse.int_or_none(doc.get("count")),
        skipped=skipped,
        newest_first=newest_first,
        newest=newest,
        oldest=oldest,
        ends=ends,
    )


def detail_request(src: Source, key: str) -> Request:
    """The detail request for one order, as a DRF router spells it (with the trailing slash; a server without it
    answers 404 and the fetch tries ``detail_fallback``)."""
    return Request(f"{LIST_PATH}{quote(key, safe='')}/", (), _HEADERS)


def detail_fallback(src: Source, key: str) -> Request:
    """The detail request without the trailing slash, for servers that route only that form."""
    return Request(f"{LIST_PATH}{quote(key, safe='')}", (), _HEADERS)


def parse_detail(src: Source, body: bytes) -> Order:
    """The order of a detail answer (bare, or wrapped in ``data``)."""
    doc = _parse.decode(src, body)
    if isinstance(doc, Mapping) and KEY_FIELD not in doc and isinstance(doc.get("data"), Mapping):
        doc = doc["data"]
    return _parse.build_order(src, doc, KEY_FIELD, STATE_FIELD, "the detail answer", CREATED_FIELD)


def filters_state(params: Sequence[tuple[str, str]]) -> bool:
    """True when the user's own params filter by state (an open-state filter would replace theirs)."""
    return any(k == "state" for k, _ in params)


def display(order: Any) -> list[tuple[str, str | None]]:
    """Price (USD) with the credits bought, and the payment method."""
    price, amount = _parse.text_at(order, "price"), _parse.text_at(order, "amount")
    credits = f" ({amount} credits)" if amount else ""
    shown = f"{price} USD{credits}" if price is not None else None
    return [("Amount", shown), ("Payment", _parse.text_at(order, "pay_way"))]


def split(part: Part, values: Sequence[str]) -> list[Part]:
    """``part`` cut in two near the middle of ``values`` (sorted creation times), at a boundary one microsecond after
    a known time with at least two microseconds before the next, so no known order lies on it; [] when there is no
    such boundary."""
    if len(values) < 2:
        return []
    middle = len(values) // 2
    for step in range(len(values)):
        for i in (middle - step, middle + step):
            boundary = _between(values[i - 1], values[i]) if 1 <= i < len(values) else None
            if boundary is not None and part.contains(boundary):
                return [Part(part.lo, boundary), Part(boundary, part.hi)]
    return []


def _between(earlier: str, later: str) -> str | None:
    """A time one microsecond after ``earlier`` when ``later`` is at least two after it, else None."""
    try:
        a, b = clock.parse(earlier), clock.parse(later)
    except ValueError:
        return None
    return clock.text(a + _TICK) if b - a >= 2 * _TICK else None


def usable_partition(params: Sequence[tuple[str, str]]) -> bool:
    """False when the user's params already restrict creation times (the parts' bounds would replace theirs)."""
    return not any(k in _RANGE for k, _ in params)


def above(created: str) -> Part | None:
    """Orders created after ``created`` (from one microsecond on)."""
    try:
        return Part(clock.text(clock.parse(created) + _TICK), None)
    except ValueError:
        return None


PARTITION: Final = Partition(
    by="created",
    fanout=2,
    exact=True,
    split=split,
    admits=lambda part, value: part.contains(value),
    usable=usable_partition,
    above=above,
)

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
    says_last=says_last,
    parse_list=parse_list,
    detail_request=detail_request,
    detail_fallback=detail_fallback,
    parse_detail=parse_detail,
    describe_error=_parse.describe_error,
    created_at=_parse.created_at,
    filters_state=filters_state,
    display=display,
    partition=PARTITION,
)

"""Ace Data Cloud ``GET /api/v1/orders/`` (seed 000): Django REST style, ``limit``/``offset``, ``{count, items}``.

The live API answers ``items``; older documents say ``results``: both are accepted. Paging advances the offset by
the number of items received, because the server may clamp ``limit`` silently. Pure: builds requests, parses bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from orderwatch.errors import ErrorBody, MalformedResponse
from orderwatch.model import CANONICAL_STATES, Order, Page
from orderwatch.sources import _parse
from orderwatch.sources._types import Request

if TYPE_CHECKING:
    from orderwatch.config import SourceConfig

DEFAULT_STATES: Final[Mapping[str, str]] = {s.casefold(): s for s in CANONICAL_STATES}
KEY_FIELD: Final = "id"
STATE_FIELD: Final = "state"
LIST_PATH: Final = "/api/v1/orders/"
_HEADERS: Final = (("Accept", "application/json"),)
_OURS: Final = frozenset({"limit", "offset"})


def first_cursor() -> int:
    """Sweeps start at offset 0."""
    return 0


def list_request(src: SourceConfig, cursor: int, *, page_size: int | None = None) -> Request:
    """The list request at offset ``cursor``, newest first unless the user's params choose an ordering."""
    user = tuple((k, v) for k, v in src.params if k not in _OURS)
    ordering = () if any(k == "ordering" for k, _ in user) else (("ordering", "-created_at"),)
    size = page_size or src.page_size
    params = (("limit", str(size)), ("offset", str(cursor)), *ordering, *user)
    return Request(LIST_PATH, params, _HEADERS)


def next_cursor(cursor: int, page: Page, page_size: int) -> int | None:
    """The next offset: advanced by the items received; None at an empty page or once ``count`` is reached."""
    received = len(page.orders)
    if received == 0:
        return None
    nxt = cursor + received
    if page.total is not None and nxt >= page.total:
        return None
    return nxt


def parse_list(src: SourceConfig, body: bytes) -> Page:
    """One list page; ``MalformedResponse``/``ErrorBody`` when the body is not ``{count, items|results}``."""
    doc = _parse.decode(src, body)
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
    orders = tuple(_parse.build_order(src, item, KEY_FIELD, STATE_FIELD, f"item {i}") for i, item in enumerate(items))
    return Page(orders=orders, total=_parse.int_or_none(doc.get("count")))


def detail_request(src: SourceConfig, key: str) -> Request:
    """The detail request for one order."""
    return Request(f"{LIST_PATH}{quote(key, safe='')}", (), _HEADERS)


def parse_detail(src: SourceConfig, body: bytes) -> Order:
    """The order of a detail answer (bare, or wrapped in ``data``)."""
    doc = _parse.decode(src, body)
    if isinstance(doc, Mapping) and KEY_FIELD not in doc and isinstance(doc.get("data"), Mapping):
        doc = doc["data"]
    return _parse.build_order(src, doc, KEY_FIELD, STATE_FIELD, "the detail answer")


describe_error = _parse.describe_error

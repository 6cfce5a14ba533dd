"""Any JSON orders API, by configuration (``kind = "json"``): dotted paths say where the orders, their keys, states
and times are; ``JsonPaging`` says how the list pages. Presets (``presets.py``) are tables of these values.

Paging styles:

- ``offset``/``page``: positions the adapter computes (an offset advances by the items received, since servers
  clamp page sizes silently). A total (a body path or ``header:NAME``) or a page count lets the rest of the pages
  be fetched concurrently, and is checked, not trusted (see ``sweep.paging``).
- ``cursor``: the next page's cursor is the last item's key (``cursor = "last_key"``) or a value at a dotted path
  of the body; a value that is a URL is followed as given (Paddle's ``meta.pagination.next``).
- ``link``: the URL of the RFC 8288 ``Link: <…>; rel="next"`` header, followed as given.
- ``none``: the whole list in one answer.

A next-page URL is followed only when it has the base URL's origin (scheme, host, port): the token never leaves it.
A ``has_more`` that is false ends the list whatever else the page says; an empty page ends it too. A sweep by cursor
or Link is complete only when it reached the end. Pure: builds requests, parses bodies and headers.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import quote, urljoin, urlsplit

import orjson

from orderwatch import clock
from orderwatch.core.model import Order, Page, canonical_json, canonical_state
from orderwatch.errors import ErrorBody, MalformedResponse, SourceError
from orderwatch.sources import _parse
from orderwatch.sources.spec import Adapter, JsonApi, Part, Request, Skip, Source

_HEADERS: Final = (("Accept", "application/json"),)
_MISSING: Final = object()
_LINK: Final = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_REL: Final = re.compile(r"""rel\s*=\s*(?:"([^"]*)"|([^\s;,"]+))""", re.IGNORECASE)
_SHOWN_FIELDS: Final = 12


class ShapeError(MalformedResponse):
    """The answer is JSON, but not where the source's config says (a path names no field): retrying cannot help."""

    retryable = False


# ---------------------------------------------------------------------------------------------- paths and values


def dig(value: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``value`` (objects by name, lists by index; "" is ``value``), or
    ``_MISSING``."""
    if not path:
        return value
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def time_text(value: Any) -> str | None:
    """A creation/update time as text that sorts like the time: ISO 8601 text, or unix seconds (Stripe)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return clock.text(datetime.fromtimestamp(value, UTC))
        except (OverflowError, OSError, ValueError):
            return None
    return clock.iso(value)


def fields_of(value: Any) -> str:
    """The field names of an object, for a message (``id, number, status, …``)."""
    if not isinstance(value, Mapping):
        return f"it is a JSON {_json_type(value)}, not an object"
    names = [str(k) for k in value]
    shown = ", ".join(names[:_SHOWN_FIELDS]) + (", …" if len(names) > _SHOWN_FIELDS else "")
    return f"fields are {shown}" if names else "it has no fields"


def _json_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """The value of header ``name`` (any case) in ``headers``, if present."""
    if not headers:
        return None
    found = headers.get(name)
    if found is None:
        wanted = name.casefold()
        found = next((v for k, v in headers.items() if k.casefold() == wanted), None)
    return found


def next_link(value: str | None) -> str | None:
    """The target of the ``rel="next"`` link of an RFC 8288 ``Link`` header (rel may list several types)."""
    for match in _LINK.finditer(value or ""):
        for rel in _REL.finditer(match[2]):
            if "next" in (rel[1] or rel[2] or "").casefold().split():
                return match[1].strip()
    return None


def same_origin(a: str, b: str) -> bool:
    """True when URLs ``a`` and ``b`` have one origin: scheme, host and port (default ports filled in)."""
    pa, pb = urlsplit(a), urlsplit(b)
    defaults = {"http": 80, "https": 443}
    try:
        ports = (pa.port or defaults.get(pa.scheme), pb.port or defaults.get(pb.scheme))
    except ValueError:
        return False
    return (pa.scheme.lower(), (pa.hostname or "").lower(), ports[0]) == (
        pb.scheme.lower(),
        (pb.hostname or "").lower(),
        ports[1],
    )


def _count(api_value: str | None, doc: Any, headers: Mapping[str, str] | None) -> int | None:
    """A total at a body path or ``header:NAME``."""
    if not api_value:
        return None
    if api_value.startswith("header:"):
        return _parse.int_or_none(header(headers, api_value.removeprefix("header:")))
    found = dig(doc, api_value)
    return None if found is _MISSING else _parse.int_or_none(found)


# ---------------------------------------------------------------------------------------------- requests


def _size(src: Source, api: JsonApi, page_size: int | None) -> int:
    size = page_size or src.page_size
    return min(size, api.paging.max_size) if api.paging.max_size else size


def _base_params(
    src: Source, api: JsonApi, page_size: int | None, states: Sequence[str], ours: set[str]
) -> list[tuple[str, str]]:
    """The user's params, the sort, the page size and a state filter (the positions are the caller's)."""
    paging = api.paging
    state_param = api.filters.state_param
    skip = set(ours)
    if paging.size_param:
        skip.add(paging.size_param)
    if states and state_param:
        skip.add(state_param)
    user = [(k, v) for k, v in src.params if k not in skip]
    chosen = {k for k, _ in user}
    params = [(k, v) for k, v in paging.sort if k not in chosen]
    if paging.size_param:
        params.append((paging.size_param, str(_size(src, api, page_size))))
    if states and state_param:
        params.append((state_param, ",".join(states)))
    return [*params, *user]


def list_request(
    src: Source,
    cursor: int,
    *,
    page_size: int | None = None,
    states: Sequence[str] = (),
    part: Part | None = None,
) -> Request:
    """The list request at ``cursor`` (an offset, a page number; for cursor and Link paging, the first page)."""
    api = _api(src)
    paging = api.paging
    if paging.style == "offset":
        params = _base_params(src, api, page_size, states, {paging.offset_param})
        params.append((paging.offset_param, str(cursor)))
    elif paging.style == "page":
        params = _base_params(src, api, page_size, states, {paging.page_param})
        params.append((paging.page_param, str(cursor)))
    else:
        params = _base_params(src, api, page_size, states, {paging.cursor_param} if paging.style == "cursor" else set())
    return Request(api.path, tuple(params), _HEADERS)


def follow(src: Source, page: Page) -> Request:
    """The request for the page after ``page`` (cursor and Link paging): its cursor sent as ``cursor_param``, or
    the URL the API gave, as given; ``MalformedResponse`` for a URL of another origin (the token stays home)."""
    api = _api(src)
    token = page.next
    if token is None:
        raise MalformedResponse(src.name, "no next page to follow")
    if api.paging.style == "link" or token.startswith(("http://", "https://")):  # (a bare "/…" may be base64)
        url = urljoin(src.base_url + api.path, token)
        if not same_origin(url, src.base_url):
            where = urlsplit(url)
            raise MalformedResponse(
                src.name,
                f"the next page is at another origin ({where.scheme}://{where.hostname}); not followed (the token "
                f"stays with {src.base_url})",
            )
        return Request(api.path, (), _HEADERS, url=url)
    params = _base_params(src, api, None, (), {api.paging.cursor_param})
    params.append((api.paging.cursor_param, token))
    return Request(api.path, tuple(params), _HEADERS)


def detail_request(src: Source, key: str) -> Request:
    """The detail request for one order (``detail_path`` with ``{key}``); a ``SourceError`` when there is none."""
    api = _api(src)
    if not api.detail_path:
        raise SourceError(src.name, f"no detail endpoint (set sources.{src.name}.detail_path)")
    return Request(api.detail_path.replace("{key}", quote(key, safe="")), (), _HEADERS)


# ---------------------------------------------------------------------------------------------- answers


def _api(src: Source) -> JsonApi:
    if src.api is None:
        raise MalformedResponse(src.name, "kind json needs its paths (sources.NAME.path, items, key, state)")
    return src.api


def _items(src: Source, api: JsonApi, doc: Any) -> list[Any]:
    items = dig(doc, api.items)
    if isinstance(items, list):
        return items
    message = describe_doc(doc)
    if message:
        raise ErrorBody(src.name, f"the API answered with an error: {message}")
    where = f"`{api.items}`" if api.items else 'the answer itself (items = "")'
    if items is _MISSING:
        holds = fields_of(doc) if isinstance(doc, Mapping) else f"it is a JSON {_json_type(doc)}"
        raise ShapeError(src.name, f"sources.{src.name}.items: no list at {where}; {holds}")
    hint = ""
    if api.items == "" and isinstance(doc, Mapping):
        lists = [str(k) for k, v in doc.items() if isinstance(v, list)]
        hint = f" (a list is at {', '.join(f'`{k}`' for k in lists[:4])})" if lists else ""
    raise ShapeError(src.name, f"sources.{src.name}.items: {where} is a JSON {_json_type(items)}, not a list{hint}")


def _scalar(src: Source, item: Any, path: str, what: str, i: int) -> str:
    value = dig(item, path)
    text = _parse.scalar_text(value) if value is not _MISSING else None
    if text is not None:
        return text
    which = "the first order" if i == 0 else f"order {i + 1} of the page"
    if value is _MISSING:
        raise ShapeError(src.name, f"sources.{src.name}.{what}: no field `{path}` in {which}; {fields_of(item)}")
    raise ShapeError(
        src.name,
        f"sources.{src.name}.{what}: `{path}` in {which} is a JSON {_json_type(value)} ({value!r:.40}), "
        "expected text or a whole number",
    )


def build(src: Source, api: JsonApi, item: Any, i: int, *, compact: bool = True) -> Order:
    """The ``Order`` of one item; ``ShapeError`` naming the key whose path finds nothing usable."""
    if not isinstance(item, Mapping):
        which = "the first order" if i == 0 else f"order {i + 1} of the page"
        raise ShapeError(src.name, f"sources.{src.name}.items: {which} is a JSON {_json_type(item)}, not an object")
    key = _scalar(src, item, api.key, "key", i)
    raw_state = _scalar(src, item, api.state, "state", i)
    created = time_text(dig(item, api.created)) if api.created else None
    state = canonical_state(raw_state, src.states)
    return Order.from_json(key, raw_state, state, canonical_json(item, compact=compact), created)


def parse_list(src: Source, body: bytes, *, skip: Skip | None = None, headers: Mapping[str, str] | None = None) -> Page:
    """One list page, with the paging facts of its body and ``headers``."""
    return _parse.parse_page(src, body, skip, lambda doc, skip: _page(src, doc, skip, headers))


def _page(src: Source, doc: Any, skip: Skip | None, headers: Mapping[str, str] | None) -> Page:
    api = _api(src)
    paging = api.paging
    items = _items(src, api, doc)
    orders: list[Order] = []
    skipped = 0
    created: list[str] = []
    for i, item in enumerate(items):
        order = build(src, api, item, i, compact=False)
        if order.created is not None:
            created.append(order.created)
        if skip is not None and skip(order.key, order.state, order.raw_json):
            skipped += 1
        else:
            orders.append(order)
    has_next: bool | None = None
    if paging.has_more:
        more = dig(doc, paging.has_more)
        has_next = more if isinstance(more, bool) else None
    if has_next and not items:  # nothing to page on from, and no proof of the end: a glitch, not an empty list
        raise MalformedResponse(src.name, f"the answer lists no order, yet `{paging.has_more}` says more follow")
    total = _count(paging.total, doc, headers)
    pages = _count(paging.total_pages, doc, headers)
    last_page = None
    if paging.style == "page":
        if pages is not None:
            last_page = paging.first_page + pages - 1
        elif total is not None:
            last_page = paging.first_page + math.ceil(total / max(1, _size(src, api, None))) - 1
    nxt = None
    if items and has_next is not False:
        if paging.style == "link":
            nxt = next_link(header(headers, "link"))
        elif paging.style == "cursor" and paging.cursor == "last_key":
            nxt = _scalar(src, items[-1], api.key, "key", len(items) - 1)
        elif paging.style == "cursor":
            nxt = _parse.scalar_text(dig(doc, paging.cursor))
    if paging.style == "link" and items and has_next is None:
        has_next = nxt is not None
    first = _parse.scalar_text(dig(items[0], api.key)) if items else None
    last = _parse.scalar_text(dig(items[-1], api.key)) if items else None
    return Page(
        orders=tuple(orders),
        total=total,
        last_page=last_page,
        has_next=has_next,
        skipped=skipped,
        newest_first=(created == sorted(created, reverse=True)) if created else None,
        newest=created[0] if created else None,
        oldest=created[-1] if created else None,
        ends=(first or "", last or "") if items else None,
        next=nxt,
    )


def parse_detail(src: Source, body: bytes) -> Order:
    """The order of a detail answer: at ``detail_items``, else the body or its ``data``/``order`` member."""
    api = _api(src)
    doc = _parse.decode(src, body)
    if api.detail_items is not None:
        doc = dig(doc, api.detail_items)
    elif isinstance(doc, Mapping) and dig(doc, api.key) is _MISSING:
        doc = next((doc[k] for k in ("data", "order") if isinstance(doc.get(k), Mapping)), doc)
    if doc is _MISSING or not isinstance(doc, Mapping):
        message = describe_doc(doc)
        raise MalformedResponse(src.name, message or "the detail answer holds no order object")
    return build(src, api, doc, 0)


def describe_doc(doc: Any) -> str | None:
    """The human message of an error body: the shapes of the seed APIs, Shopify's ``errors``, Paddle's
    ``error.detail``."""
    if not isinstance(doc, Mapping):
        return None
    err = doc.get("error")
    if isinstance(err, Mapping) and isinstance(err.get("detail"), str):
        return ": ".join(str(p) for p in (err.get("code"), err.get("detail")) if p)
    errors = doc.get("errors")
    if isinstance(errors, str):
        return errors
    if isinstance(errors, Mapping):
        return "; ".join(f"{k}: {v if isinstance(v, str) else ' '.join(map(str, v))}" for k, v in errors.items())
    if isinstance(doc.get("code"), str) and isinstance(doc.get("message"), str):
        return f"{doc['code']}: {doc['message']}"
    return _parse.error_text(doc)


def describe_error(body: bytes) -> str | None:
    """The message of an error answer, if the body is JSON carrying one."""
    try:
        return describe_doc(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def first_order_notes(src: Source, order: Any) -> list[str]:
    """For ``check --connect``: what the first order says of the optional paths (``created``, ``updated``) and of
    the state mapping; empty when all is well. (A wrong ``items``, ``key`` or ``state`` fails the page itself.)"""
    api = _api(src)
    notes = []
    for what, path in (("created", api.created), ("updated", api.updated)):
        if path and time_text(dig(order, path)) is None:
            found = dig(order, path)
            said = fields_of(order) if found is _MISSING else f"it holds {found!r:.40}, not a time"
            notes.append(f"sources.{src.name}.{what}: no time at `{path}` in the first order; {said}")
    raw = _parse.scalar_text(dig(order, api.state))
    if raw is not None and raw.casefold() not in src.states:
        notes.append(f"sources.{src.name}.states: the first order's state `{raw}` is not mapped (kept as it is)")
    return notes


# ---------------------------------------------------------------------------------------------- for people


def _shown(order: Any, token: str) -> str | None:
    path, _, how = token.partition(":")
    value = dig(order, path)
    text = _parse.text_at({"v": value}, "v") if value is not _MISSING else None
    if isinstance(value, list):  # a list of names (Shopify's payment_gateway_names, Stripe's payment types)
        names = [_parse.text_at({"v": v}, "v") for v in value]
        text = ", ".join(n for n in names if n) or None
    if text is None:
        return None
    if how == "minor":  # an amount in the currency's minor unit (Stripe, Paddle): 4999 -> 49.99
        try:
            return f"{Decimal(text) / 100:.2f}"
        except InvalidOperation:
            return text
    if how == "upper":
        return text.upper()
    return text


def display_lines(spec: Sequence[tuple[str, str]], order: Any) -> list[tuple[str, str | None]]:
    """An order's lines for people: each label with the values of its space-separated paths (``path:minor``,
    ``path:upper``); a path that finds nothing is left out, a line that finds nothing is None."""
    lines: list[tuple[str, str | None]] = []
    for label, paths in spec:
        parts = [shown for token in paths.split() if (shown := _shown(order, token))]
        lines.append((label, " ".join(parts) or None))
    return lines


# ---------------------------------------------------------------------------------------------- the adapter


@functools.lru_cache(maxsize=128)
def adapter(api: JsonApi) -> Adapter:
    """The adapter of one generic JSON API (one per distinct ``JsonApi``; they are values)."""
    paging = api.paging
    style = paging.style

    def first_cursor() -> int:
        return paging.first_page if style == "page" else 0

    def plan(first: Page, cursor: int, limit: int) -> list[int]:
        if not first.size or first.has_next is False:
            return []
        if style == "page" and first.last_page is not None:
            return _parse.plan_range(cursor + 1, first.last_page + 1, 1, limit)
        if style == "offset" and first.total is not None:
            return _parse.plan_range(cursor + first.size, first.total, first.size, limit)
        return []

    def next_cursor(cursor: int, page: Page) -> int | None:
        if style == "none" or not page.size or page.has_next is False:
            return None
        if style == "offset":
            return cursor + page.size
        if style == "page":
            return cursor + 1
        return cursor + 1 if page.next is not None else None

    def says_last(cursor: int, page: Page) -> bool:
        if style == "none" or page.has_next is False:
            return True
        if style == "page" and page.last_page is not None:
            return cursor >= page.last_page
        if style == "offset" and page.total is not None:
            return cursor + page.size >= page.total
        return False

    def created_at(order: Any) -> str | None:
        found = dig(order, api.created) if api.created else _MISSING
        return None if found is _MISSING else time_text(found)

    def filters_state(params: Sequence[tuple[str, str]]) -> bool:
        return api.filters.state_param is not None and any(k == api.filters.state_param for k, _ in params)

    return Adapter(
        kind="json",
        raw_states=api.raw_states,
        default_states={},
        open_states=(),
        key_field=api.key,
        state_field=api.state,
        first_cursor=first_cursor,
        list_request=list_request,
        plan=plan,
        next_cursor=next_cursor,
        says_last=says_last,
        parse_list=parse_list,
        detail_request=detail_request,
        detail_fallback=lambda src, key: None,
        parse_detail=parse_detail,
        describe_error=describe_error,
        created_at=created_at,
        filters_state=filters_state,
        display=functools.partial(display_lines, api.display or _DEFAULT_DISPLAY),
        partition=None,
        follow=follow if style in ("cursor", "link") else None,
    )


_DEFAULT_DISPLAY: Final = (
    ("Amount", "amount.value amount.currency"),
    ("Customer", "customer.name"),
    ("Payment", "payment_method"),
)

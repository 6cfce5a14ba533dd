"""Parsing helpers shared by the adapters: JSON decoding and order-field coercion. Pure."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from orderwatch import clock
from orderwatch.core.model import Order, Page, canonical_json, canonical_state
from orderwatch.errors import MalformedResponse
from orderwatch.sources.spec import Skip, Source

# orjson reads integers beyond 64 bits (-2**63 .. 2**64-1) as rounded floats; such a number has 19 digits or more.
# A regex over a whole page costs several times orjson's parse, so one byte translation screens instead: digits
# become "0"; the bytes that may stand before a number (`:`, `[`, `,`, `-`, whitespace) become " "; a quote stays a
# quote and anything else becomes "x". A number token of 19+ digits then reads " 000…"; digits that begin a string
# read '"000…' and are not taken. A false alarm (digits after a space inside a string) only costs the slower parse.
_SCREEN = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x20 if b in b":[,- \t\r\n" else 0x22 if b == 0x22 else 0x78 for b in range(256)
)
_LONG_NUMBER = b" " + b"0" * 19


def has_long_int(body: bytes) -> bool:
    """True when ``body`` may hold an integer orjson would round: a number of 19 digits or more."""
    screened = body.translate(_SCREEN)
    return _LONG_NUMBER in screened or screened.startswith(_LONG_NUMBER[1:])


def decode(src: Source, body: bytes, *, screen: bool = True) -> Any:
    """The JSON value of ``body``; a ``MalformedResponse`` that says what came instead. ``screen=False`` skips the
    check for integers orjson would round (see ``needs_exact_parse``)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # the stdlib accepts a few things orjson refuses (e.g. integers beyond 64 bits)
            doc = json.loads(body)
        except RecursionError:
            raise MalformedResponse(src.name, "answer is JSON nested too deeply to read") from None
        except ValueError:
            pass
        else:
            return _valid_unicode(src, doc)
        head = body[:200].decode("utf-8", "replace").strip()
        if not head:
            raise MalformedResponse(src.name, "empty answer where JSON was expected") from None
        if head.startswith("<"):
            raise MalformedResponse(src.name, "answer is HTML, not JSON (a proxy or error page?)") from None
        raise MalformedResponse(src.name, f"answer is not valid JSON ({exc.msg} at byte {exc.pos})") from None
    if screen and has_long_int(body):  # the stdlib keeps integers beyond 64 bits exact
        try:
            return _valid_unicode(src, json.loads(body))
        except RecursionError:
            raise MalformedResponse(src.name, "answer is JSON nested too deeply to read") from None
    return doc


def _valid_unicode(src: Source, doc: Any) -> Any:
    """``doc`` when every string in it can be stored and shown (UTF-8); the stdlib's parser lets a lone surrogate
    such as ``"\\ud800"`` through, which would fail later, far from the answer that carried it."""
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedResponse(src.name, "answer holds text that is not valid Unicode (a lone surrogate)") from None
    return doc


def parse_page(src: Source, body: bytes, skip: Skip | None, page_of: Callable[[Any, Skip | None], Page]) -> Page:
    """The page ``page_of`` makes of the JSON of ``body``, with integers beyond 64 bits exact.

    Without ``skip``, the body is screened for such integers before it is parsed (``decode``). A sweep with a
    ``skip`` test parses first without the screen (it costs ~0.1 ms a page) and screens only a page from which it
    built an order, or could not: an order skip took as unchanged matched the stored canonical JSON, which came from
    an exact parse, so an integer orjson rounded in it would have made it a miss.
    """
    if skip is not None:
        try:
            page = page_of(decode(src, body, screen=False), skip)
        except MalformedResponse:
            pass  # e.g. a key beyond 64 bits, read as a float: the screened parse below decides
        else:
            if not page.orders or not has_long_int(body):
                return page
    return page_of(decode(src, body), skip)


def scalar_text(value: Any) -> str | None:
    """A key or state as text: strings as they are, integers as digits; anything else is None."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


iso_time = clock.iso


def time_order(items: Sequence[Any], field: str) -> tuple[bool | None, str | None, str | None]:
    """Whether the items are newest first by their creation time ``field`` (None: none has one), and the first and
    last creation times seen."""
    first = last = None
    ordered = True
    for item in items:
        when = iso_time(item.get(field)) if type(item) is dict else None
        if when is None:
            continue
        if first is None:
            first = when
        elif last is not None and when > last:
            ordered = False
        last = when
    return (ordered if first is not None else None), first, last


def ends(items: Sequence[Any], key_field: str) -> tuple[str, str] | None:
    """The keys of a page's first and last items, as text (to tell a page repeated at another position)."""
    if not items:
        return None
    first, last = items[0], items[-1]
    keys = [scalar_text(i.get(key_field)) if isinstance(i, Mapping) else None for i in (first, last)]
    return (keys[0] or "", keys[1] or "")


def build_order(
    src: Source, item: Any, key_field: str, state_field: str, where: str, created_field: str | None = None
) -> Order:
    """An ``Order`` from one list item; ``MalformedResponse`` when it has no usable key or state."""
    if not isinstance(item, Mapping):
        raise MalformedResponse(src.name, f"{where} is a {type(item).__name__}, expected an object")
    key = scalar_text(item.get(key_field))
    if key is None:
        raise MalformedResponse(src.name, f"{where} has no usable {key_field!r} (got {item.get(key_field)!r:.40})")
    raw_state = scalar_text(item.get(state_field))
    if raw_state is None:
        raise MalformedResponse(
            src.name,
            f"{where} (order {key}) has no usable {state_field!r} (got {item.get(state_field)!r:.40})",
        )
    created = iso_time(item.get(created_field)) if created_field else None
    return Order.build(key, raw_state, canonical_state(raw_state, src.states), item, created=created)


def build_orders(
    src: Source,
    items: list[Any],
    key_field: str,
    state_field: str,
    skip: Skip | None = None,
    created_field: str | None = None,
) -> tuple[tuple[Order, ...], int]:
    """The ``Order`` of each list item (``build_order``'s checks, with a fast path for the usual item: a JSON object
    whose key and state are non-blank strings), and how many items ``skip`` took as unchanged (left out). Its
    ``raw_json`` is not yet compacted (see ``Order.compact``)."""
    states: dict[str, str] = {}  # raw state -> canonical, for this page
    orders: list[Order] = []
    skipped = 0
    from_json = Order.from_json
    for i, item in enumerate(items):
        if type(item) is dict:
            key, raw_state = item.get(key_field), item.get(state_field)
            if type(key) is str and type(raw_state) is str:
                key, raw_state = key.strip(), raw_state.strip()
                if key and raw_state:
                    state = states.get(raw_state)
                    if state is None:
                        state = states[raw_state] = canonical_state(raw_state, src.states)
                    blob = canonical_json(item, compact=False)
                    if skip is not None and skip(key, state, blob):
                        skipped += 1
                    else:
                        created = iso_time(item.get(created_field)) if created_field else None
                        orders.append(from_json(key, raw_state, state, blob, created))
                    continue
        order = build_order(src, item, key_field, state_field, f"item {i}", created_field)  # e.g. an integer key
        if skip is not None and skip(order.key, order.state, order.raw_json):
            skipped += 1
        else:
            orders.append(order)
    return tuple(orders), skipped


def int_or_none(value: Any) -> int | None:
    """An integer from an int or a digit string (servers send both); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def error_text(body: Any) -> str | None:
    """The human message of a JSON error body in any of the shapes these APIs use, if there is one."""
    if not isinstance(body, Mapping):
        return None
    err = body.get("error")
    if isinstance(err, Mapping):
        code, message = err.get("code"), err.get("message")
        return ": ".join(str(p) for p in (code, message) if p) or None
    if isinstance(err, str):
        return err
    for field in ("detail", "message"):
        if isinstance(body.get(field), str):
            return str(body[field])
    return None


def describe_error(body: bytes) -> str | None:
    """The message of an error answer, if the body is JSON carrying one."""
    try:
        return error_text(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def text_at(order: Any, *path: str) -> str | None:
    """The value at ``path`` in ``order`` (nested objects) as text for people: numbers without float noise, strings
    on one line; None for a missing, empty or structured value."""
    value: Any = order
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if value is None or isinstance(value, dict | list | tuple):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    shown = " ".join(str(value).split())
    return shown or None


def created_at(order: Any) -> str | None:
    """The order's ``created_at`` (both seed APIs write ISO 8601 in UTC) in ``iso_time``'s form, if it has one."""
    return iso_time(order.get("created_at")) if isinstance(order, Mapping) else None


def plan_range(start: int, stop: int, step: int, limit: int) -> list[int]:
    """At most ``limit`` cursors ``start, start + step, …`` below ``stop``, without building more (a server's total
    may be any number)."""
    if step <= 0 or limit <= 0 or start >= stop:
        return []
    return list(range(start, min(stop, start + step * limit), step))

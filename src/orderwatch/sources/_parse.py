"""Parsing helpers shared by the adapters: JSON decoding and order-field coercion. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from orderwatch.errors import MalformedResponse
from orderwatch.model import Order, canonical_state

if TYPE_CHECKING:
    from orderwatch.config import SourceConfig

_LONG_INT = re.compile(rb"(?<![\w.])-?\d{20,}(?![\w.])")  # 20+ digits: possibly beyond 64 bits


def decode(src: SourceConfig, body: bytes) -> Any:
    """The JSON value of ``body``; a ``MalformedResponse`` that says what came instead."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # the stdlib accepts a few things orjson refuses (e.g. lone surrogates in strings)
            return json.loads(body)
        except ValueError:
            pass
        head = body[:200].decode("utf-8", "replace").strip()
        if not head:
            raise MalformedResponse(src.name, "empty answer where JSON was expected") from None
        if head.startswith("<"):
            raise MalformedResponse(src.name, "answer is HTML, not JSON (a proxy or error page?)") from None
        raise MalformedResponse(src.name, f"answer is not valid JSON ({exc.msg} at byte {exc.pos})") from None
    if _LONG_INT.search(body):  # orjson reads integers beyond 64 bits as rounded floats; the stdlib keeps them exact
        return json.loads(body)
    return doc


def scalar_text(value: Any) -> str | None:
    """A key or state as text: strings as they are, integers as digits; anything else is None."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def build_order(src: SourceConfig, item: Any, key_field: str, state_field: str, where: str) -> Order:
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
    return Order.build(key, raw_state, canonical_state(raw_state, src.states), item)


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

"""WordPress REST API conventions: query-argument validation with WordPress's own codes and messages, and the
``{"code", "message", "data": {"status"}}`` error body (WooCommerce's REST API is built on them)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from orderwatch.simulator.wire import SimResponse

WP_JSON: Final = "application/json; charset=UTF-8"
_NUMERIC: Final = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")  # PHP is_numeric
_DATE: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:\d{2})?)?$"
)  # rest_parse_date
_TRUE: Final = frozenset({"true", "1"})
_BOOL: Final = frozenset({"true", "false", "1", "0", ""})
ArgKind = Literal["integer", "string", "boolean", "date-time", "enum", "integer-list", "enum-list"]


@dataclass(frozen=True, slots=True)
class Arg:
    """One registered query argument: its JSON-schema-like type, bounds or allowed values, and default."""

    name: str
    kind: ArgKind
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Invalid:
    code: str
    message: str


def wp_error(code: str, message: str, status: int, headers: list[tuple[str, str]] | None = None) -> SimResponse:
    """A WordPress REST error answer."""
    body = {"code": code, "message": message, "data": {"status": status}}
    return SimResponse(status, orjson.dumps(body), WP_JSON, headers or [])


def wp_list(items: Sequence[str]) -> str:
    """``wp_sprintf``'s ``%l``: ``a and b``; ``a, b, and c``."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def validate(args: Sequence[Arg], params: Mapping[str, list[str]]) -> tuple[dict[str, Any], SimResponse | None]:
    """Typed values for ``args`` (defaults filled in), or WordPress's 400 ``rest_invalid_param`` listing every bad
    argument in registration order. Lists come as ``a,b`` or as repeated ``name[]``; unknown names are ignored."""
    values: dict[str, Any] = {}
    bad: dict[str, _Invalid] = {}
    for arg in args:
        raw = _raw(arg, params)
        if raw is None:
            values[arg.name] = arg.default
            continue
        value = _check(arg, raw)
        if isinstance(value, _Invalid):
            bad[arg.name] = value
        else:
            values[arg.name] = value
    if not bad:
        return values, None
    data = {
        "status": 400,
        "params": {name: err.message for name, err in bad.items()},
        "details": {name: {"code": err.code, "message": err.message, "data": None} for name, err in bad.items()},
    }
    body = {"code": "rest_invalid_param", "message": f"Invalid parameter(s): {', '.join(bad)}", "data": data}
    return values, SimResponse(400, orjson.dumps(body), WP_JSON)


def _raw(arg: Arg, params: Mapping[str, list[str]]) -> str | list[str] | None:
    if arg.kind.endswith("-list") and f"{arg.name}[]" in params:
        return params[f"{arg.name}[]"]
    values = params.get(arg.name)
    return values[0] if values else None


def _check(arg: Arg, raw: str | list[str]) -> Any:
    if arg.kind.endswith("-list"):
        items = raw if isinstance(raw, list) else [v for v in re.split(r"[\s,]+", raw) if v]
        checked = [_scalar(arg, item, f"{arg.name}[{i}]") for i, item in enumerate(items)]
        return next((c for c in checked if isinstance(c, _Invalid)), checked)
    return _scalar(arg, raw if isinstance(raw, str) else raw[0], arg.name)


def _scalar(arg: Arg, raw: str, param: str) -> Any:
    kind = arg.kind.removesuffix("-list")
    if kind == "integer":
        return _integer(arg, raw, param)
    if kind == "boolean":
        if raw.lower() not in _BOOL:
            return _Invalid("rest_invalid_type", f"{param} is not of type boolean.")
        return raw.lower() in _TRUE
    if kind == "date-time":
        return raw if _DATE.match(raw) else _Invalid("rest_invalid_date", "Invalid date.")
    if kind == "enum" and raw not in arg.choices:
        if len(arg.choices) == 1:
            return _Invalid("rest_not_in_enum", f"{param} is not {arg.choices[0]}.")
        return _Invalid("rest_not_in_enum", f"{param} is not one of {wp_list(arg.choices)}.")
    return raw


def _integer(arg: Arg, raw: str, param: str) -> int | _Invalid:
    number = float(raw) if _NUMERIC.match(raw) else math.nan
    if not math.isfinite(number) or number != round(number):
        return _Invalid("rest_invalid_type", f"{param} is not of type integer.")
    value = int(number)
    low, high = arg.minimum, arg.maximum
    if low is not None and high is not None and not low <= value <= high:
        return _Invalid("rest_out_of_bounds", f"{param} must be between {low} (inclusive) and {high} (inclusive)")
    if low is not None and high is None and value < low:
        return _Invalid("rest_out_of_bounds", f"{param} must be greater than or equal to {low}")
    return value

"""What a list request asks for, as a server under given ``Conventions`` reads it: filters, ranges, sort, search.

Pure functions over the parsed query string (``Params``: name → every value, in order).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from orderwatch.simulator.conventions import AceMulti, Conventions
from orderwatch.simulator.wire import Params, SimResponse, ts

ACE_MULTI_FIELDS: Final = ("state", "pay_way", "user_id")  # the multi-valued Ace filters, in declaration order


@dataclass(frozen=True, slots=True)
class AceQuery:
    """The filters and ordering of one Ace list request (an empty set filters nothing)."""

    created_from: str | None
    created_to: str | None
    states: set[str]
    pay_ways: set[str]
    users: set[str]
    ordering: str  # "created_at", "-created_at", or "" for the undocumented default
    to_inclusive: bool = True  # created_to is lte (else lt)

    @property
    def filters_rows(self) -> bool:
        """True when rows must be checked one by one (the date range is done by bisection)."""
        return bool(self.states or self.pay_ways or self.users)

    def matches(self, order: Mapping[str, Any]) -> bool:
        """Whether ``order`` passes the state, pay_way and user_id filters."""
        return (
            (not self.states or order["state"] in self.states)
            and (not self.pay_ways or order["pay_way"] in self.pay_ways)
            and (not self.users or order["user_id"] in self.users)
        )


def multi(values: list[str] | None) -> set[str]:
    """A multi-valued parameter read leniently: repeated parameters and comma-separated values both count."""
    return {v.strip() for raw in values or () for v in raw.split(",") if v.strip()}


def _read_multi(values: list[str] | None, reading: AceMulti, choices: Collection[str]) -> set[str] | str:
    """The values one multi-valued filter keeps under ``reading``, or the form error a server answers."""
    if reading == "lenient":
        return multi(values)
    if not values:
        return set()
    if reading == "choice":  # MultipleChoiceField: every raw value must be one of the choices, blanks included
        bad = next((v for v in values if v not in choices), None)
        if bad is not None:
            return f"Select a valid choice. {bad} is not one of the available choices."
        return set(values)
    last = values[-1].strip()  # QueryDict.get: the last repeated value
    if reading == "last":  # CharFilter: the stripped value, literally
        return {last} if last else set()
    return {v.strip() for v in last.split(",") if v.strip()}  # "in", "comma"


def _read_date(raw: str) -> str | None:
    """An ISO 8601 bound as the stored timestamps spell it (naive means UTC); ``ValueError`` when invalid."""
    if not raw:
        return None
    parsed = datetime.fromisoformat(raw)
    return ts(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def parse_ace_query(
    params: Params, conventions: Conventions, choices: Mapping[str, Collection[str]]
) -> AceQuery | SimResponse:
    """Parse an Ace list query; invalid values are a 400 naming each field, like a Django form's errors.

    ``choices`` holds the valid values of each multi-valued filter (for the ``choice`` reading).
    """
    errors: dict[str, list[str]] = {}
    bounds: dict[str, str | None] = dict.fromkeys(("created_at_from", "created_at_to"))
    if conventions.ace_created_range != "ignored":
        for name in bounds:
            try:
                bounds[name] = _read_date((params.get(name) or [""])[0])
            except ValueError:
                errors[name] = ["Enter a valid date/time."]
    kept: dict[str, set[str]] = {}
    for name in ACE_MULTI_FIELDS:
        if name == "state" and conventions.ace_state_filter == "ignored":
            kept[name] = set()
            continue
        read = _read_multi(params.get(name), conventions.ace_multi, choices.get(name, ()))
        if isinstance(read, str):
            errors[name] = [read]
        else:
            kept[name] = read
    if errors:
        return SimResponse(400, orjson.dumps(errors))
    ordering = (params.get("ordering") or [""])[0].split(",")[0].strip()
    if conventions.ace_sort == "ignored" or ordering not in {"created_at", "-created_at"}:
        ordering = ""
    return AceQuery(
        bounds["created_at_from"],
        bounds["created_at_to"],
        kept["state"],
        kept["pay_way"],
        kept["user_id"],
        ordering,
        to_inclusive=conventions.ace_created_range != "exclusive_to",
    )


@dataclass(frozen=True, slots=True)
class LskyQuery:
    """The ``q`` tokens of one Lsky list request: ``sort:latest|oldest``, ``status:=:a,b``, bare words."""

    sort: str = ""
    include: set[str] = field(default_factory=set)
    exclude: set[str] = field(default_factory=set)
    words: list[str] = field(default_factory=list)
    prefix: bool = False  # bare words match the start of trade_no (else anywhere in it)

    @property
    def filters_rows(self) -> bool:
        """True when the request filters rows."""
        return bool(self.include or self.exclude or self.words)

    def matches(self, order: Mapping[str, Any]) -> bool:
        """Whether ``order`` passes the status filters and contains every bare word in its trade number."""
        status, trade_no = order["status"], order["trade_no"]
        return (
            (not self.include or status in self.include)
            and status not in self.exclude
            and all(trade_no.startswith(w) if self.prefix else w in trade_no for w in self.words)
        )


def parse_lsky_query(params: Params, conventions: Conventions) -> LskyQuery:
    """Parse ``q`` (space-separated tokens; unknown ``key:value`` tokens are ignored)."""
    include: set[str] = set()
    exclude: set[str] = set()
    words: list[str] = []
    sort = ""
    for token in (params.get("q") or [""])[0].split():
        key, _, rest = token.partition(":")
        if not rest:
            words.append(token)
        elif key == "sort":
            sort = rest
        elif key == "status" and conventions.lsky_status_filter != "ignored":
            op, _, values = rest.partition(":") if ":" in rest else ("=", "", rest)
            listed = [v for v in values.split(",") if v]
            if op in {"=", "!="}:
                (include if op == "=" else exclude).update(
                    listed[:1] if conventions.lsky_status_filter == "first" else listed
                )
    return LskyQuery(
        "" if conventions.lsky_sort == "ignored" else sort,
        include,
        exclude,
        [] if conventions.lsky_search == "ignored" else words,
        prefix=conventions.lsky_search == "prefix",
    )

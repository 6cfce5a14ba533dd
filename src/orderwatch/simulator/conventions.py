"""How a real server of either API may read requests and write answers, within what the APIs document.

``Conventions`` is one frozen value with a switch per point where real servers differ. ``Simulator(conventions=...)``
serves under it; ``sim.conventions = replace(sim.conventions, ace_multi="last")`` switches a running simulator
(the next request sees the new value whole). Conventions change answers, never the orders or their ``history``.

Every switch's values say, in the field's ``metadata["values"]`` (also ``Conventions.switches()`` and the
standalone simulator's ``--help``), which real server or framework answers so. The default of every switch is
what the simulator has always done: the most forgiving reading, which no single real server is known to combine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final, Literal

AceMulti = Literal["lenient", "last", "in", "choice", "comma"]
Honoured = Literal["honoured", "ignored"]
LskyStatusFilter = Literal["honoured", "first", "ignored"]
AceDetail = Literal["both", "slash", "noslash", "none", "ignores_id"]
LskyDetail = Literal["yes", "none", "ignores_id"]
AceCreatedRange = Literal["inclusive", "exclusive_to", "ignored"]
LskySearch = Literal["substring", "prefix", "ignored"]
Count = Literal["true", "low", "high", "huge", "zero", "negative", "null", "string", "missing"]
LskyPaginator = Literal["resource", "plain", "simple"]
AceListKey = Literal["items", "results"]
AceLinks = Literal["absent", "drf"]

_PREFIXES: Final = ("ace_", "lsky_")


def _count_values(where: str) -> dict[str, str]:
    """The values of a count switch (``where`` names the number that lies)."""
    return {
        "true": f"{where} is the number of matching orders",
        "low": f"{where} is a third of the truth, rounded down (a stale cached count, a lagging replica)",
        "high": f"{where} is ten times the truth (a count over a join that multiplies rows)",
        "huge": f"{where} is 10**12 (an estimated count gone wild, e.g. from planner statistics)",
        "zero": f"{where} is 0 (a count query that failed quietly)",
        "negative": f"{where} is -1 ('unknown', as some hand-written paginators say it)",
        "null": f"{where} is null (the count was not computed)",
        "string": f'{where} is the string "many" (a display value instead of a number)',
        "missing": f"{where} is absent (a paginator that does not count)",
    }


@dataclass(frozen=True, slots=True)
class Conventions:
    """The conventions one simulated server follows; every switch is independent of the others.

    Lying counts change only the numbers (and the links computed from them, as the frameworks compute them):
    which rows a page holds stays the truth, so paging by items received past a low count still finds rows.
    """

    ace_multi: AceMulti = field(
        default="lenient",
        metadata={
            "values": {
                "lenient": "Ace state/pay_way/user_id: repeated keys and comma lists are both split and OR'd",
                "last": "django-filter filterset_fields (a CharFilter): a comma list is one literal value "
                "(state=Pending,Paid matches nothing: 0 rows, HTTP 200); of repeated keys only the last counts",
                "in": "django-filter BaseInFilter (state__in): a comma list is split and OR'd; of repeated keys "
                "only the last counts (the widget reads QueryDict.get)",
                "choice": "django-filter MultipleChoiceFilter: repeated keys are OR'd; a value outside the "
                "choices, a comma list included, is HTTP 400 {field: ['Select a valid choice. ...']}",
                "comma": "the seed document's reading, as a hand-written view does it "
                "(query_params.get(name).split(',')): comma lists split, of repeated keys the last; "
                "on the wire the same answers as in",
            }
        },
    )
    ace_state_filter: Honoured = field(
        default="honoured",
        metadata={
            "values": {
                "honoured": "Ace state is a declared filter",
                "ignored": "state is not in the filterset: django-filter ignores undeclared parameters, so every "
                "state comes back with HTTP 200",
            }
        },
    )
    lsky_status_filter: LskyStatusFilter = field(
        default="honoured",
        metadata={
            "values": {
                "honoured": "Lsky q token status:=:a,b keeps every listed status (status:!=:a,b drops them)",
                "first": "only the first listed status counts (an app that feeds it into one where status = ?)",
                "ignored": "the status token is ignored (an app without it): every status comes back",
            }
        },
    )
    ace_detail: AceDetail = field(
        default="both",
        metadata={
            "values": {
                "both": "Ace /api/v1/orders/{id} and /api/v1/orders/{id}/ both answer (a hand-written route "
                "with an optional slash)",
                "slash": "a DRF router (trailing slash) behind Django's CommonMiddleware with APPEND_SLASH: the "
                "slash form answers; any slash-less Ace path is a 301 to the slash form (query kept), before auth",
                "noslash": "a route without the trailing slash: /{id} answers; /{id}/ resolves to no URL, so "
                "Django's HTML 404, before auth",
                "none": "no usable detail endpoint: every detail path is DRF's 404 {'detail': 'Not found.'}",
                "ignores_id": "a broken detail view (get_object returning the newest row): HTTP 200 with the "
                "newest order whatever id is asked",
            }
        },
    )
    lsky_detail: LskyDetail = field(
        default="yes",
        metadata={
            "values": {
                "yes": "Lsky /api/v2/user/orders/{trade_no} answers the order, or the app's 404",
                "none": "no such route: Laravel's 404 {'message': 'The route ... could not be found.'} "
                "(HTML without Accept: JSON), before auth",
                "ignores_id": "a broken detail action: HTTP 200 with the newest order whatever is asked",
            }
        },
    )
    ace_sort: Honoured = field(
        default="honoured",
        metadata={
            "values": {
                "honoured": "Ace ordering=created_at|-created_at is honoured (DRF OrderingFilter with created_at "
                "in ordering_fields)",
                "ignored": "ordering is silently ignored (no OrderingFilter, or the field not allowed): the "
                "undocumented default order, by id",
            }
        },
    )
    lsky_sort: Honoured = field(
        default="honoured",
        metadata={
            "values": {
                "honoured": "Lsky q token sort:latest|oldest orders by created_at",
                "ignored": "the sort token is ignored: no ORDER BY, an order that every change reshuffles",
            }
        },
    )
    ace_created_range: AceCreatedRange = field(
        default="inclusive",
        metadata={
            "values": {
                "inclusive": "Ace created_at_from/created_at_to are gte/lte (django-filter DateTimeFilter, "
                "DateTimeFromToRangeFilter)",
                "exclusive_to": "created_at_to is declared with lookup_expr='lt': a half-open range",
                "ignored": "neither is declared: both are silently ignored, invalid dates included",
            }
        },
    )
    lsky_search: LskySearch = field(
        default="substring",
        metadata={
            "values": {
                "substring": "Lsky bare words in q match anywhere in trade_no (where trade_no like '%word%')",
                "prefix": "bare words match the start of trade_no only (like 'word%', an index-friendly search)",
                "ignored": "bare words are ignored: every order comes back",
            }
        },
    )
    ace_count: Count = field(default="true", metadata={"values": _count_values("Ace count")})
    lsky_count: Count = field(default="true", metadata={"values": _count_values("Lsky total (and last_page)")})
    lsky_paginator: LskyPaginator = field(
        default="resource",
        metadata={
            "values": {
                "resource": "Lsky data is a resource collection over paginate(): {data, links, meta} (the seed)",
                "plain": "paginate() returned as is: LengthAwarePaginator::toArray(), flat (current_page, data, "
                "first_page_url, from, last_page, last_page_url, links, next_page_url, path, per_page, "
                "prev_page_url, to, total)",
                "simple": "simplePaginate(): no count query, so no total or last_page; next_page_url says "
                "whether another page exists",
            }
        },
    )
    ace_list: AceListKey = field(
        default="items",
        metadata={
            "values": {
                "items": "Ace rows come under items (the live API's paginator)",
                "results": "rows come under results (DRF's paginators, as the seed document shows)",
            }
        },
    )
    ace_links: AceLinks = field(
        default="absent",
        metadata={
            "values": {
                "absent": "Ace pages carry no links (the live API)",
                "drf": "DRF LimitOffsetPagination's absolute next/previous URLs (null at either end)",
            }
        },
    )

    def __post_init__(self) -> None:
        for name, values in self.switches().items():
            value = getattr(self, name)
            if value not in values:
                raise ValueError(f"conventions: {name} cannot be {value!r}; expected one of {', '.join(values)}")

    # Presets -----------------------------------------------------------------------------------------------
    @classmethod
    def django(cls) -> Conventions:
        """Ace as a stock DRF + django-filter server: filterset_fields (``last``), a DRF router with trailing
        slashes behind APPEND_SLASH (``slash``), OrderingFilter honoured, LimitOffsetPagination (``results``,
        ``next``/``previous``). Only Ace switches move."""
        return cls(ace_multi="last", ace_detail="slash", ace_list="results", ace_links="drf")

    @classmethod
    def laravel(cls) -> Conventions:
        """Lsky as a Laravel controller returning ``paginate()`` itself (the flat paginator JSON), with
        ``apiResource`` routes. Only Lsky switches move."""
        return cls(lsky_paginator="plain")

    @classmethod
    def seed(cls) -> Conventions:
        """What the seed documents say and nothing more: comma-separated Ace states, rows under ``results``."""
        return cls(ace_multi="comma", ace_list="results")

    @classmethod
    def presets(cls) -> Mapping[str, Callable[[], Conventions]]:
        """The named presets: ``default``, ``django``, ``laravel``, ``seed``."""
        return {"default": cls, "django": cls.django, "laravel": cls.laravel, "seed": cls.seed}

    # Introspection ----------------------------------------------------------------------------------------
    @classmethod
    def switches(cls) -> Mapping[str, Mapping[str, str]]:
        """Every switch: its values in order (the default first), each with the real server that answers so."""
        return {f.name: f.metadata["values"] for f in fields(cls)}

    @classmethod
    def variations(cls) -> list[Conventions]:
        """Every single-switch departure from the default, one per (switch, non-default value): for tests that
        run "under each convention" (``pytest.mark.parametrize(..., ids=str)``)."""
        default = cls()
        return [
            _replaced(default, {name: value})
            for name, values in cls.switches().items()
            for value in values
            if value != getattr(default, name)
        ]

    def changes(self) -> dict[str, str]:
        """The switches that differ from the default, by name."""
        default = type(self)()
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)
        }

    def merged(self, other: Conventions) -> Conventions:
        """These conventions with ``other``'s departures from the default applied on top."""
        return _replaced(self, other.changes())

    def with_switches(self, items: Iterable[str]) -> Conventions:
        """These conventions with ``NAME=VALUE`` items applied in order (``ValueError`` naming a bad item).

        ``NAME`` is a switch, or a switch without its ``ace_``/``lsky_`` prefix: then every API's switch of that
        name that accepts ``VALUE`` is set (``detail=none`` sets both detail switches, ``detail=slash`` Ace's).
        """
        switches, changes = self.switches(), dict[str, str]()
        for item in items:
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name:
                raise ValueError(f"convention {item!r}: expected NAME=VALUE, e.g. ace_multi=last")
            targets = [name] if name in switches else [p + name for p in _PREFIXES if p + name in switches]
            if not targets:
                raise ValueError(f"convention {item!r}: no switch {name!r}; switches: {', '.join(switches)}")
            accepting = [t for t in targets if value in switches[t]]
            if not accepting:
                allowed = " | ".join(f"{t}: {', '.join(switches[t])}" for t in targets)
                raise ValueError(f"convention {item!r}: {value!r} is not a value of {allowed}")
            changes.update(dict.fromkeys(accepting, value))
        return _replaced(self, changes)

    def __str__(self) -> str:
        """``ace_multi=last ace_detail=slash``, or ``default``."""
        return " ".join(f"{name}={value}" for name, value in self.changes().items()) or "default"


def _replaced(base: Conventions, changes: Mapping[str, str]) -> Conventions:
    """``dataclasses.replace`` with switches named at run time (``__post_init__`` checks their values)."""
    named: dict[str, Any] = dict(changes)
    return replace(base, **named)

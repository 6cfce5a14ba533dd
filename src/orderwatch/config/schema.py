"""The TOML schema: one pydantic model per table, validated strictly (unknown keys are errors), each turned into
the plain value the rest of orderwatch uses (``Source``, ``Channel``, ``Rule``, the settings of ``Config``).

pydantic stops here: nothing outside ``orderwatch.config`` sees these models or ``SecretStr``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orderwatch.config.problems import NONE, Problem, did_you_mean, quoted, raise_all
from orderwatch.core import quiet as hours
from orderwatch.core import schedule
from orderwatch.core.durations import format_duration, parse_duration
from orderwatch.core.hosts import is_loopback
from orderwatch.core.model import CANONICAL_STATES, EventKind, fold_state
from orderwatch.core.rules import Channel, Rule
from orderwatch.core.secret import Secret
from orderwatch.core.summary import KINDS, Summary
from orderwatch.sources import ADAPTERS, JSON_KIND, JsonApi, JsonFilters, JsonPaging, Source
from orderwatch.sources import KINDS as SOURCE_KINDS

NAME_RE: Final = re.compile(r"[a-z0-9_-]+")
_NUMBER: Final = r"\d+(?:\.\d+)?"
_SIZE_RE: Final = re.compile(rf"({_NUMBER})\s*([kmg]i?b|b)?", re.IGNORECASE)
_SIZE_UNITS: Final = {"b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}


def resolve(value: str | Path, base_dir: Path | None) -> Path:
    """``value`` as an absolute path; a relative one is taken against ``base_dir`` (default: the working dir)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir or Path.cwd()) / path


def _duration(positive: bool) -> BeforeValidator:
    def check(value: Any) -> float | None:
        if value is None:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise Problem('expected a duration like "30s"') from None
        if positive and seconds == 0:
            raise Problem("must be longer than 0s")
        return seconds

    return BeforeValidator(check)


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.fullmatch(value.strip())):
        size = int(Decimal(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()])
    else:
        raise Problem('expected a size like "32MiB" or a number of bytes')
    if size < 1:
        raise Problem("must be at least 1 byte")
    return size


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise Problem('names may hold only a-z, 0-9, "_" and "-"')
    return value


def _state(value: str) -> str:
    if not value.strip():
        raise Problem("must not be empty")
    return fold_state(value.strip())


def _parsed(parse: Callable[[str], object]) -> AfterValidator:
    """A validator that keeps a value ``parse`` accepts and reports the ``ValueError`` it raises otherwise."""

    def check(value: str) -> str:
        try:
            parse(value)
        except ValueError as exc:
            raise Problem(str(exc)) from None
        return value

    return AfterValidator(check)


Duration = Annotated[float, _duration(positive=False)]
PositiveDuration = Annotated[float, _duration(positive=True)]
Name = Annotated[StrictStr, AfterValidator(_name)]
State = Annotated[StrictStr, AfterValidator(_state)]
Zone = Annotated[StrictStr, _parsed(hours.zone)]
Day = Annotated[StrictStr, _parsed(lambda day: hours.parse_days([day]))]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DefaultsConfig(_Frozen):
    """The ``[defaults]`` table: every source inherits these keys unless it sets them itself."""

    page_size: Annotated[StrictInt, Field(ge=1, le=10_000)] = 100
    interval: PositiveDuration = 60.0
    jitter: Duration = 5.0
    timeout: PositiveDuration = 15.0
    allow_insecure_http: StrictBool = False
    ca_bundle: Path | None = None
    max_pages: Annotated[StrictInt, Field(ge=1)] = 1000
    max_response_bytes: Annotated[int, BeforeValidator(_size)] = 32 * 2**20
    retry_budget: Duration = 120.0
    full_sweep: PositiveDuration = 6 * 3600.0
    open_states: tuple[State, ...] | None = None  # None: the adapter's OPEN_STATES
    incremental: StrictBool = True

    @field_validator("ca_bundle", mode="before")
    @classmethod
    def _ca_bundle(cls, value: Any, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str | Path) or not str(value):
            raise Problem("expected a file path")
        path = resolve(value, (info.context or {}).get("base_dir"))
        if not path.is_file():
            raise Problem("file not found", value=str(path))
        return path


_AUTH_RE: Final = re.compile(r"bearer|basic|header:[A-Za-z0-9!#$%&'*+.^_`|~-]+|query:[^\s&=#]+")
_JSON_KEYS: Final = (
    "preset",
    "path",
    "detail_path",
    "detail_items",
    "items",
    "key",
    "state",
    "created",
    "updated",
    "paging",
    "filters",
    "display",
)


def _dotted_path(value: str) -> str:
    if value != value.strip() or ".." in value or value.startswith(".") or value.endswith("."):
        raise Problem('expected a dotted path like "data" or "meta.pagination.next" ("" for the body itself)')
    return value


def _body_or_header(value: str) -> str:
    if value.startswith("header:"):
        if not re.fullmatch(r"header:[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
            raise Problem('expected "header:NAME" with a header name like X-WP-Total')
        return value
    if not value:
        raise Problem('expected a dotted path in the body or "header:NAME"')
    return _dotted_path(value)


DottedPath = Annotated[StrictStr, AfterValidator(_dotted_path)]
FieldPath = Annotated[StrictStr, Field(min_length=1), AfterValidator(_dotted_path)]
CountPath = Annotated[StrictStr, AfterValidator(_body_or_header)]
ParamName = Annotated[StrictStr, Field(min_length=1)]


class PagingConfig(_Frozen):
    """``[sources.NAME.paging]`` of a ``kind = "json"`` source."""

    style: Literal["offset", "page", "cursor", "link", "none"] = "page"
    size_param: ParamName | None = "per_page"
    page_param: ParamName = "page"
    first_page: Annotated[StrictInt, Field(ge=0)] = 1
    offset_param: ParamName = "offset"
    cursor_param: ParamName = "starting_after"
    cursor: FieldPath = "last_key"
    has_more: FieldPath | None = None
    total: CountPath | None = None
    total_pages: CountPath | None = None
    sort: Mapping[str, StrictStr] = Field(default_factory=dict)
    max_size: Annotated[StrictInt, Field(ge=1)] | None = None

    def to_paging(self) -> JsonPaging:
        return JsonPaging(
            style=self.style,
            size_param=self.size_param,
            page_param=self.page_param,
            first_page=self.first_page,
            offset_param=self.offset_param,
            cursor_param=self.cursor_param,
            cursor=self.cursor,
            has_more=self.has_more,
            total=self.total,
            total_pages=self.total_pages,
            sort=tuple(self.sort.items()),
            max_size=self.max_size,
        )


class FiltersConfig(_Frozen):
    """``[sources.NAME.filters]`` of a ``kind = "json"`` source."""

    state_param: ParamName | None = None
    updated_since_param: ParamName | None = None


class SourceConfig(DefaultsConfig):
    """One ``[sources.NAME]`` table, with ``[defaults]`` applied, the token resolved and states merged."""

    name: Name
    kind: StrictStr
    base_url: StrictStr
    token: SecretStr | None = None
    multi_value: Literal["repeat", "comma"] = "repeat"
    params: tuple[tuple[str, str], ...] = ()
    states: Mapping[str, str] = Field(default_factory=dict, validate_default=True)
    auth: StrictStr = "bearer"
    # kind = "json" only (a preset fills them; see orderwatch.sources.presets)
    preset: StrictStr | None = None
    path: StrictStr | None = None
    detail_path: StrictStr | None = None
    detail_items: DottedPath | None = None
    items: DottedPath | None = None
    key: FieldPath | None = None
    state: FieldPath | None = None
    created: FieldPath | None = None
    updated: FieldPath | None = None
    paging: PagingConfig | None = None
    filters: FiltersConfig | None = None
    display: Mapping[str, StrictStr] | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in SOURCE_KINDS:
            raise Problem(f"expected one of {quoted(SOURCE_KINDS)}")
        return value

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        if not _AUTH_RE.fullmatch(value):
            raise Problem('expected "bearer", "basic", "header:NAME" or "query:NAME"')
        return value

    @field_validator("path", "detail_path")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not value.startswith("/") or any(c in value for c in "?# "):
            raise Problem('expected a path under base_url like "/api/orders" (query parameters go in params)')
        if info.field_name == "detail_path" and "{key}" not in value:
            raise Problem('must hold "{key}" where the order\'s key goes, like "/api/orders/{key}"')
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            ok = parts.scheme in {"http", "https"} and bool(parts.hostname) and parts.port != 0
        except ValueError:
            ok = False
        if not ok:
            raise Problem("expected an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise Problem("must not hold a query or fragment (put query parameters in params)")
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise Problem("must not be empty", value=NONE)
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, tuple):
            return value
        if not isinstance(value, Mapping):
            raise Problem('expected a table like { pay_way = "Stripe" }')
        pairs: list[tuple[str, str]] = []
        for key, item in value.items():
            items = item if isinstance(item, list | tuple) else [item]
            texts = [_param_text(v) for v in items]
            if any(t is None for t in texts):
                raise Problem("expected a string, number, boolean or a list of them", at=(key,), value=item)
            if info.data.get("multi_value") == "comma" and isinstance(item, list | tuple):
                pairs += [(key, ",".join(t or "" for t in texts))] if texts else []
            else:
                pairs += [(key, t or "") for t in texts]
        return tuple(pairs)

    @field_validator("states", mode="before")
    @classmethod
    def _states(cls, value: Any, info: ValidationInfo) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise Problem('expected a table like { "0" = "Pending" }')
        adapter = ADAPTERS.get(info.data.get("kind", ""))
        merged = dict(adapter.default_states) if adapter else {}
        for raw, state in value.items():
            if not isinstance(state, str) or not state.strip():
                raise Problem("expected a state name", at=(raw,), value=state)
            merged[str(raw)] = fold_state(state.strip())  # as written: filters send it so (``to_source`` folds)
        return merged

    def to_api(self) -> JsonApi | None:
        """Where a ``kind = "json"`` API keeps things (None for the other kinds)."""
        if self.kind != JSON_KIND:
            return None
        paging = self.paging or PagingConfig()
        filters = self.filters or FiltersConfig()
        return JsonApi(
            path=self.path or "/",
            items=self.items if self.items is not None else "",
            key=self.key or "id",
            state=self.state or "status",
            created=self.created,
            updated=self.updated,
            detail_path=self.detail_path,
            detail_items=self.detail_items,
            paging=paging.to_paging(),
            filters=JsonFilters(filters.state_param, filters.updated_since_param),
            raw_states=tuple(dict.fromkeys(self.states)),
            display=tuple((self.display or {}).items()),
            preset=self.preset,
        )

    def to_source(self) -> Source:
        """The plain ``Source`` the pipeline works with (``open_states`` defaulting to the adapter's)."""
        api = self.to_api()
        default_open = ADAPTERS[self.kind].open_states if api is None else ("Pending",)
        return Source(
            name=self.name,
            kind=self.kind,
            base_url=self.base_url,
            token=Secret(self.token.get_secret_value()) if self.token is not None else None,
            params=self.params,
            multi_value=self.multi_value,
            states={raw.casefold(): state for raw, state in self.states.items()},
            open_states=self.open_states if self.open_states is not None else default_open,
            page_size=self.page_size,
            interval=self.interval,
            jitter=self.jitter,
            timeout=self.timeout,
            retry_budget=self.retry_budget,
            full_sweep=self.full_sweep,
            incremental=self.incremental and api is None,  # kind json: every poll is a full sweep
            max_pages=self.max_pages,
            max_response_bytes=self.max_response_bytes,
            allow_insecure_http=self.allow_insecure_http,
            ca_bundle=self.ca_bundle,
            auth=self.auth,
            api=api,
        )

    def _json_problems(self) -> list[Problem]:
        """What a ``kind = "json"`` source lacks or sets in vain; the json keys on another kind."""
        given = [k for k in _JSON_KEYS if getattr(self, k) is not None]
        if self.kind != JSON_KIND:
            return [Problem(f'only for kind = "{JSON_KIND}"', at=(k,), value=NONE) for k in given]
        found = []
        if self.path is None:
            found.append(Problem('required for kind = "json" (or set preset)', at=("path",), value=NONE))
        paging = self.paging or PagingConfig()
        body_paths = [p for p in (paging.has_more, paging.total, paging.total_pages) if p]
        if paging.style == "cursor" and paging.cursor != "last_key":
            body_paths.append(paging.cursor)
        if (self.items or "") == "" and any(not p.startswith("header:") for p in body_paths):
            msg = 'the body is the list (items = ""), so no paging value can be read from it'
            found.append(Problem(msg, at=("items",), value=self.items or ""))
        return found

    @model_validator(mode="after")
    def _together(self) -> SourceConfig:
        found = self._json_problems()
        parts = urlsplit(self.base_url)
        if parts.scheme == "http" and self.token and not (is_loopback(parts.hostname) or self.allow_insecure_http):
            msg = "plain http:// would send the token unencrypted; use https:// or set allow_insecure_http = true"
            found.append(Problem(msg, at=("base_url",), value=self.base_url))
        known = {*CANONICAL_STATES, *self.states.values()}
        for state in self.open_states or ():
            if state not in known:
                found.append(Problem("unknown state" + did_you_mean(state, known), at=("open_states",), value=state))
        raise_all(found)
        return self


def _param_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, str | int | float) else None


class ChannelConfig(_Frozen):
    """One ``[channels.NAME]`` table: a named set of apprise URLs."""

    name: Name
    urls: Annotated[tuple[SecretStr, ...], Field(min_length=1)]
    digest_over: Annotated[StrictInt, Field(ge=1)] = 10
    quiet: Annotated[StrictStr, _parsed(hours.parse_window)] | None = None
    timezone: Zone = "UTC"
    days: tuple[Day, ...] = ()

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        empty = [i for i, url in enumerate(value) if not url.get_secret_value().strip()]
        raise_all([Problem("must not be empty", at=(i,), value=NONE) for i in empty])
        return value

    @model_validator(mode="after")
    def _quiet_parts(self) -> ChannelConfig:
        if self.quiet is None and self.days:
            raise_all([Problem("days need quiet hours: set quiet too", at=("days",), value=list(self.days))])
        return self

    def to_channel(self) -> Channel:
        """The plain ``Channel`` delivery works with."""
        window = None
        if self.quiet is not None:
            start, end = hours.parse_window(self.quiet)
            window = hours.QuietHours(start, end, self.timezone, hours.parse_days(self.days))
        return Channel(self.name, tuple(Secret(u.get_secret_value()) for u in self.urls), self.digest_over, window)


class RuleConfig(_Frozen):
    """One ``[[rules]]`` table: which events go to which channels. Empty ``from_states``/``to``/``sources``: any."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: Annotated[StrictStr, Field(min_length=1)] = "rule"
    events: Annotated[tuple[EventKind, ...], Field(min_length=1)] = ("transition",)
    from_states: tuple[State, ...] = Field(default=(), alias="from")
    to: tuple[State, ...] = ()
    sources: tuple[StrictStr, ...] = ()
    channels: Annotated[tuple[StrictStr, ...], Field(min_length=1)]
    title: StrictStr | None = None
    body: StrictStr | None = None
    urgent: StrictBool = False
    amount: Annotated[StrictStr, Field(min_length=1)] | None = None
    min_amount: Decimal | None = None

    @field_validator("min_amount", mode="before")
    @classmethod
    def _min_amount(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str | None):
            raise Problem('expected a number like 100 or "99.50"')
        try:
            number = None if value is None else Decimal(str(value).strip())
        except ArithmeticError:
            number = Decimal("NaN")
        if number is not None and not number.is_finite():
            raise Problem('expected a number like 100 or "99.50"')
        return number

    @model_validator(mode="after")
    def _amount_path(self) -> RuleConfig:
        if self.min_amount is not None and self.amount is None:
            msg = 'needs amount: the dotted path to the order\'s amount, like amount = "price"'
            raise_all([Problem(msg, at=("min_amount",), value=str(self.min_amount))])
        return self

    @field_validator("events")
    @classmethod
    def _unique(cls, value: tuple[EventKind, ...]) -> tuple[EventKind, ...]:
        return tuple(dict.fromkeys(value))

    def to_rule(self) -> Rule:
        """The plain ``Rule`` routing works with."""
        return Rule(
            channels=self.channels,
            name=self.name,
            events=self.events,
            from_states=self.from_states,
            to=self.to,
            sources=self.sources,
            title=self.title,
            body=self.body,
            urgent=self.urgent,
            amount=self.amount,
            min_amount=self.min_amount,
        )


class SummaryConfig(_Frozen):
    """One ``[[summaries]]`` table: a summary of the events of each period, sent to ``channel`` on ``schedule``."""

    name: Name
    channel: StrictStr
    schedule: StrictStr
    timezone: Zone = "UTC"
    sources: tuple[StrictStr, ...] = ()
    kinds: Annotated[tuple[EventKind, ...], Field(min_length=1)] = KINDS
    title: StrictStr | None = None
    body: StrictStr | None = None

    @model_validator(mode="after")
    def _schedule(self) -> SummaryConfig:
        try:
            schedule.parse_schedule(self.schedule, self.timezone)
        except ValueError as exc:
            raise_all([Problem(str(exc), at=("schedule",), value=self.schedule)])
        return self

    def to_summary(self, every_source: tuple[str, ...]) -> Summary:
        """The plain ``Summary`` the daemon works with (``sources`` empty: ``every_source``)."""
        return Summary(
            name=self.name,
            channel=self.channel,
            schedule=schedule.parse_schedule(self.schedule, self.timezone),
            sources=self.sources or every_source,
            kinds=tuple(dict.fromkeys(self.kinds)),
            title=self.title,
            body=self.body,
        )


class DeliveryConfig(_Frozen):
    """``[delivery]``: retry back-off of failed notifications and how often the delivery loop looks."""

    retry_initial: PositiveDuration = 30.0
    retry_max: PositiveDuration = 3600.0
    give_up_after: PositiveDuration = 86400.0
    interval: PositiveDuration = 2.0

    @model_validator(mode="after")
    def _order(self) -> DeliveryConfig:
        if self.retry_max < self.retry_initial:
            msg = f"must not be shorter than retry_initial ({format_duration(self.retry_initial)})"
            raise_all([Problem(msg, at=("retry_max",), value=format_duration(self.retry_max))])
        return self


class HealthConfig(_Frozen):
    """``[health]``: alert ``channel`` after ``failures`` failed polls in a row or ``after`` seconds failing."""

    channel: StrictStr | None = None
    failures: Annotated[StrictInt, Field(ge=1)] = 3
    after: Annotated[float | None, _duration(positive=True)] = None


class MetricsConfig(_Frozen):
    """``[metrics]``: where to serve Prometheus metrics (``host:port``); None: not served."""

    listen: StrictStr | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            host, _, port = value.rpartition(":")
            if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
                raise Problem('expected host:port like "127.0.0.1:9464"')
        return value


class LogConfig(_Frozen):
    """``[log]``: output format and minimum level."""

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"

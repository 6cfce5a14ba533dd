"""TOML configuration → a validated, frozen ``Config``. Every problem is reported at once, one line each.

``find_config_path`` picks the file; ``load_config`` reads it, expands ``${VAR}`` references, resolves the tokens
(``token``, ``token_file``, ``token_credential``), validates each section with pydantic and translates pydantic's
errors into ``KEY.PATH: message, got VALUE`` lines. Secret values are shown as ``<secret>``, never echoed.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar
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
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orderwatch.core.model import CANONICAL_STATES, EventKind, fold_state
from orderwatch.errors import ConfigError

if TYPE_CHECKING:
    from orderwatch.sources import Adapter

_Loc = tuple[str | int, ...]
Check = Callable[[str], str | None]
_NAME_RE: Final = re.compile(r"[a-z0-9_-]+")
_PLAIN_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_NUMBER = r"\d+(?:\.\d+)?"
_DURATION_RE: Final = re.compile(
    rf"(?:(?P<d>{_NUMBER})d)?\s*(?:(?P<h>{_NUMBER})h)?\s*(?:(?P<m>{_NUMBER})m)?\s*"
    rf"(?:(?P<s>{_NUMBER})s)?\s*(?:(?P<ms>{_NUMBER})ms)?"
)
_DURATION_UNITS: Final = {u: Decimal(n) for u, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1), ("ms", "0.001"))}
_SIZE_RE: Final = re.compile(rf"({_NUMBER})\s*([kmg]i?b|b)?", re.IGNORECASE)
_SIZE_UNITS: Final = {"b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}
_REF_RE: Final = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_TOP_KEYS: Final = ("database", "defaults", "sources", "channels", "rules", "delivery", "health", "metrics", "log")
_TOKEN_KEYS: Final = ("token", "token_file", "token_credential")
_SEARCH_PATHS: Final = (Path("orderwatch.toml"), Path("/etc/orderwatch/orderwatch.toml"))
_INPUT: Final[Any] = object()  # show pydantic's input value
_NONE: Final[Any] = object()  # show no value


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: "45s", "5m", "1h30m", "2d", "250ms", or a number of seconds. ValueError otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            return float(value)
    elif isinstance(value, str) and (text := value.strip()):
        if re.fullmatch(_NUMBER, text):
            return float(text)
        match = _DURATION_RE.fullmatch(text)
        if match and any(match.groups()):
            return float(sum(Decimal(n) * _DURATION_UNITS[unit] for unit, n in match.groupdict().items() if n))
    raise ValueError(f'expected a duration like "30s", "5m" or "1h30m", got {value!r}')


def format_duration(seconds: float) -> str:
    """``seconds`` written the way ``parse_duration`` reads it, to the millisecond: 5400 → "1h30m"."""
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a non-negative number of seconds, got {seconds!r}")
    rest, parts = round(seconds * 1000), []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


class _Tainted(str):
    """A string holding a value from the environment or a secret file: never shown in a message."""

    __slots__ = ()


class _Problem(ValueError):
    """One problem found by a validator: ``at`` extends the key path, ``value`` is what to show after "got"."""

    def __init__(self, message: str, *, at: _Loc = (), value: Any = _INPUT, more: Sequence[_Problem] = ()) -> None:
        super().__init__(message)
        self.message, self.at, self.value, self.more = message, at, value, tuple(more)


def _raise_all(found: list[_Problem]) -> None:
    """Raise every problem an after-validator found (pydantic takes one exception; it carries the rest)."""
    if found:
        raise _Problem(found[0].message, at=found[0].at, value=found[0].value, more=found[1:])


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _dotted(loc: _Loc) -> str:
    """``("rules", 0, "to")`` → ``rules[0].to``; odd keys are quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _PLAIN_RE.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            out += f".{text}" if out else text
    return out


def _is_secret(loc: _Loc, value: Any) -> bool:
    """True for tokens, channel URLs, URLs with a password, and anything that came from the environment."""
    if "token" in loc or (loc[:1] == ("channels",) and "digest_over" not in loc):
        return True
    if isinstance(value, str):
        return isinstance(value, _Tainted) or re.search(r"://[^/]*@", value) is not None
    if isinstance(value, Mapping):
        return any(_is_secret(loc, v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_is_secret(loc, v) for v in value)
    return False


def _show(loc: _Loc, value: Any) -> str:
    if _is_secret(loc, value):
        return "<secret>"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:76] + "...."


_EXPECTED: Final = {"string": "a string", "int": "a whole number", "float": "a number", "bool": "true or false"}
_EXPECTED.update(list="a list", tuple="a list", dict="a table", mapping="a table", model="a table")
_M = TypeVar("_M", bound=BaseModel)


class _Problems:
    """Collects problem lines; a key whose value could not be expanded gets no further problems."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._silenced: list[_Loc] = []

    def add(self, loc: _Loc, message: str, value: Any = _NONE) -> None:
        """Record ``KEY.PATH: message[, got VALUE]`` unless ``loc`` is silenced."""
        if any(loc[: len(s)] == s for s in self._silenced):
            return
        shown = "" if value is _NONE else f", got {_show(loc, value)}"
        self.lines.append(f"{_dotted(loc)}: {message}{shown}")

    def silence(self, loc: _Loc) -> None:
        """Report nothing more about ``loc`` or the keys under it."""
        self._silenced.append(loc)

    def validate(
        self,
        model: type[_M],
        data: Mapping[str, Any],
        loc: _Loc,
        context: Mapping[str, Any] | None = None,
        known: Iterable[str] | None = None,
    ) -> _M | None:
        """``model`` built from ``data``; on failure, one line per pydantic error and None."""
        try:
            return model.model_validate(data, context=context)
        except ValidationError as err:
            self.report(loc, err, model, known)
            return None

    def report(
        self, loc: _Loc, err: ValidationError, model: type[BaseModel], known: Iterable[str] | None = None
    ) -> None:
        """One line per error in ``err``; ``known`` (default: the model's keys) feeds "did you mean"."""
        keys = list(known) if known is not None else [f.alias or n for n, f in model.model_fields.items()]
        for error in err.errors():
            self._translate(loc, error, keys)

    def _translate(self, loc: _Loc, error: Any, keys: list[str]) -> None:
        kind, ctx, where = error["type"], error.get("ctx", {}), (*loc, *error["loc"])
        if kind == "missing":
            return self.add(where, "required key is missing")
        if "too_short" in kind and len(error["input"]) >= ctx["min_length"]:
            return None  # pydantic's echo of a bad item, already reported
        if kind == "extra_forbidden":
            return self.add(where, "unknown key" + _did_you_mean(str(where[-1]), keys))
        if kind == "value_error" and isinstance(ctx.get("error"), _Problem):
            for found in (ctx["error"], *ctx["error"].more):
                value = error["input"] if found.value is _INPUT else found.value
                self.add((*where, *found.at), found.message, value)
            return None
        expected = _EXPECTED.get(kind.split("_")[0])
        message = error["msg"][:1].lower() + error["msg"][1:]
        if expected and (kind.endswith("_type") or kind == "int_from_float"):
            message = f"expected {expected}"
        elif kind in {"too_short", "string_too_short"}:
            message = "must not be empty"
        elif kind == "literal_error":
            message = "expected " + ctx["expected"].replace("'", '"')
        elif kind in {"greater_than_equal", "less_than_equal"}:
            message = f"must be at {'least' if 'ge' in ctx else 'most'} {ctx.get('ge', ctx.get('le'))}"
        return self.add(where, message, _NONE if "too_short" in kind else error["input"])


def _adapters() -> Mapping[str, Adapter]:
    from orderwatch.sources import ADAPTERS  # imported late: the adapters' modules may import this one

    return ADAPTERS


def _resolve(value: str | Path, base_dir: Path | None) -> Path:
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
            raise _Problem('expected a duration like "30s"') from None
        if positive and seconds == 0:
            raise _Problem("must be longer than 0s")
        return seconds

    return BeforeValidator(check)


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.fullmatch(value.strip())):
        size = int(Decimal(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()])
    else:
        raise _Problem('expected a size like "32MiB" or a number of bytes')
    if size < 1:
        raise _Problem("must be at least 1 byte")
    return size


def _name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise _Problem('names may hold only a-z, 0-9, "_" and "-"')
    return value


def _state(value: str) -> str:
    if not value.strip():
        raise _Problem("must not be empty")
    return fold_state(value.strip())


Duration = Annotated[float, _duration(positive=False)]
PositiveDuration = Annotated[float, _duration(positive=True)]
Name = Annotated[StrictStr, AfterValidator(_name)]
State = Annotated[StrictStr, AfterValidator(_state)]


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
            raise _Problem("expected a file path")
        path = _resolve(value, (info.context or {}).get("base_dir"))
        if not path.is_file():
            raise _Problem("file not found", value=str(path))
        return path


class SourceConfig(DefaultsConfig):
    """One ``[sources.NAME]`` table, with ``[defaults]`` applied, the token resolved and states merged."""

    name: Name
    kind: StrictStr
    base_url: StrictStr
    token: SecretStr | None = None
    multi_value: Literal["repeat", "comma"] = "repeat"
    params: tuple[tuple[str, str], ...] = ()
    states: Mapping[str, str] = Field(default_factory=dict, validate_default=True)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in _adapters():
            raise _Problem(f"expected one of {_quoted(_adapters())}")
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
            raise _Problem("expected an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise _Problem("must not hold a query or fragment (put query parameters in params)")
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise _Problem("must not be empty", value=_NONE)
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, tuple):
            return value
        if not isinstance(value, Mapping):
            raise _Problem('expected a table like { pay_way = "Stripe" }')
        pairs: list[tuple[str, str]] = []
        for key, item in value.items():
            items = item if isinstance(item, list | tuple) else [item]
            texts = [_param_text(v) for v in items]
            if any(t is None for t in texts):
                raise _Problem("expected a string, number, boolean or a list of them", at=(key,), value=item)
            if info.data.get("multi_value") == "comma" and isinstance(item, list | tuple):
                pairs += [(key, ",".join(t or "" for t in texts))] if texts else []
            else:
                pairs += [(key, t or "") for t in texts]
        return tuple(pairs)

    @field_validator("states", mode="before")
    @classmethod
    def _states(cls, value: Any, info: ValidationInfo) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise _Problem('expected a table like { "0" = "Pending" }')
        adapter = _adapters().get(info.data.get("kind", ""))
        merged = dict(adapter.DEFAULT_STATES) if adapter else {}
        for raw, state in value.items():
            if not isinstance(state, str) or not state.strip():
                raise _Problem("expected a state name", at=(raw,), value=state)
            merged[str(raw).casefold()] = fold_state(state.strip())
        return merged

    @property
    def watched_open_states(self) -> tuple[str, ...]:
        """The canonical states incremental polls re-check: ``open_states``, else the adapter's defaults."""
        return self.open_states if self.open_states is not None else _adapters()[self.kind].OPEN_STATES

    @model_validator(mode="after")
    def _together(self) -> SourceConfig:
        found = []
        parts = urlsplit(self.base_url)
        if parts.scheme == "http" and self.token and not (_loopback(parts.hostname) or self.allow_insecure_http):
            msg = "plain http:// would send the token unencrypted; use https:// or set allow_insecure_http = true"
            found.append(_Problem(msg, at=("base_url",), value=self.base_url))
        known = {*CANONICAL_STATES, *self.states.values()}
        for state in self.open_states or ():
            if state not in known:
                found.append(_Problem("unknown state" + _did_you_mean(state, known), at=("open_states",), value=state))
        _raise_all(found)
        return self


def _loopback(host: str | None) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _param_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, str | int | float) else None


class ChannelConfig(_Frozen):
    """One ``[channels.NAME]`` table: a named set of apprise URLs."""

    name: Name
    urls: Annotated[tuple[SecretStr, ...], Field(min_length=1)]
    digest_over: Annotated[StrictInt, Field(ge=1)] = 10

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        empty = [i for i, url in enumerate(value) if not url.get_secret_value().strip()]
        _raise_all([_Problem("must not be empty", at=(i,), value=_NONE) for i in empty])
        return value


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

    @field_validator("events")
    @classmethod
    def _unique(cls, value: tuple[EventKind, ...]) -> tuple[EventKind, ...]:
        return tuple(dict.fromkeys(value))


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
            _raise_all([_Problem(msg, at=("retry_max",), value=format_duration(self.retry_max))])
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
                raise _Problem('expected host:port like "127.0.0.1:9464"')
        return value


class LogConfig(_Frozen):
    """``[log]``: output format and minimum level."""

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Frozen):
    """The whole validated configuration. Durations are seconds; ``database`` is resolved."""

    path: Path | None = None
    database: Path
    sources: Mapping[str, SourceConfig]
    channels: Mapping[str, ChannelConfig] = Field(default_factory=dict)
    rules: tuple[RuleConfig, ...] = ()
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)


def find_config_path(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """The config file: ``explicit`` (--config), else $ORDERWATCH_CONFIG, else ./orderwatch.toml, else /etc/…."""
    given = explicit if explicit is not None else environ.get("ORDERWATCH_CONFIG") or None
    if given is not None:
        path, origin = Path(given), "--config" if explicit is not None else "$ORDERWATCH_CONFIG"
        if not path.is_file():
            raise ConfigError(f"config file {path} (from {origin}) does not exist or is not a file")
        return path
    for path in _SEARCH_PATHS:
        if path.is_file():
            return path
    tried = ", ".join(str(p.absolute()) for p in _SEARCH_PATHS)
    raise ConfigError(f"no config file found (tried {tried}); pass --config PATH or set $ORDERWATCH_CONFIG")


def _expand(value: Any, loc: _Loc, environ: Mapping[str, str], problems: _Problems) -> Any:
    """``value`` with ``${VAR}``, ``${VAR:-default}`` and ``$${`` expanded in every string, however nested."""
    if isinstance(value, dict):
        return {k: _expand(v, (*loc, k), environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*loc, i), environ, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    tainted = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal tainted
        if match[0] == "$${":
            return "${"
        tainted = True
        name, default = match[1], match[2]
        if name is None:
            problems.add(loc, 'malformed reference: write ${NAME} or ${NAME:-default} ("$${" for a literal "${")')
        elif environ.get(name) or (default is None and name in environ):
            return environ[name]
        elif default is not None:
            return default
        else:
            problems.add(loc, f"environment variable {name} is not set")
        problems.silence(loc)
        return ""

    expanded = _REF_RE.sub(substitute, value)
    return _Tainted(expanded) if tainted else expanded


def _table(problems: _Problems, data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if isinstance(value, dict):
        return value
    problems.add((key,), "expected a table", value)
    return {}


def _read_secret(problems: _Problems, loc: _Loc, path: Path, what: str) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        problems.add(loc, f"cannot read the {what} {path}: {reason}")
        return None
    if not text:
        problems.add(loc, f"the {what} {path} is empty")
    return _Tainted(text) if text else None


def _resolve_token(
    problems: _Problems, loc: _Loc, item: dict[str, Any], base_dir: Path, environ: Mapping[str, str]
) -> None:
    """Replace ``token_file``/``token_credential`` in ``item`` with ``token`` read from the file."""
    given = [key for key in _TOKEN_KEYS if key in item]
    if len(given) > 1:
        problems.add(loc, f"set only one of {', '.join(given)}")
        problems.silence((*loc, "token"))
    file, credential = item.pop("token_file", None), item.pop("token_credential", None)
    if len(given) != 1 or given == ["token"]:
        return None
    where = (*loc, given[0])
    value = file if file is not None else credential
    if not isinstance(value, str) or not value.strip():
        return problems.add(where, "expected a file path" if file is not None else "expected a name", value)
    if file is not None:
        token = _read_secret(problems, where, _resolve(value, base_dir), "token file")
    elif not environ.get("CREDENTIALS_DIRECTORY"):
        msg = "$CREDENTIALS_DIRECTORY is not set (token_credential needs systemd's LoadCredential=)"
        return problems.add(where, msg, value)
    elif "/" in value or value in {".", ".."}:
        return problems.add(where, "expected a credential name, not a path", value)
    else:
        token = _read_secret(problems, where, Path(environ["CREDENTIALS_DIRECTORY"]) / value, "credential")
    if token is not None:
        item["token"] = token
    return None


def _database(problems: _Problems, value: Any, environ: Mapping[str, str], base_dir: Path) -> Path:
    """``database`` resolved: absolute as given; relative against $STATE_DIRECTORY, else the config's folder."""
    if not isinstance(value, str) or not value.strip():
        problems.add(("database",), "expected a file path", value)
        return base_dir / "orderwatch.db"
    state_dir = environ.get("STATE_DIRECTORY", "").split(":")[0]
    path = _resolve(value, Path(state_dir).absolute() if state_dir else base_dir)
    if path.is_dir():
        problems.add(("database",), "is a directory; expected a file path", str(path))
    return path


def _references(problems: _Problems, loc: _Loc, value: Any, names: Iterable[str], what: str) -> None:
    """One problem per name in ``value`` that is not one of ``names``."""
    defined = sorted(names)
    for name in value if isinstance(value, list) else [value]:
        if isinstance(name, str) and name not in defined:
            shown = "<secret>" if isinstance(name, _Tainted) else f'"{name}"'
            problems.add(loc, f"unknown {what} {shown} (defined: {', '.join(defined) or 'none'})")


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    check_template: Check | None = None,
    check_url: Check | None = None,
) -> Config:
    """Read, expand and validate the config file; raise one ConfigError listing every problem.

    ``environ`` defaults to ``os.environ``. ``check_template`` and ``check_url`` return None when a rule's
    title/body or a channel URL is fine, else a problem text (which must not contain the URL).
    """
    env = os.environ if environ is None else environ
    file = find_config_path(path, env)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"invalid TOML: {err}", path=str(file)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the file: {getattr(err, 'strerror', None) or err}", path=str(file)) from None
    base_dir = file.absolute().parent
    problems = _Problems()
    data: dict[str, Any] = _expand(raw, (), env, problems)
    for key in data.keys() - set(_TOP_KEYS):
        problems.add((key,), "unknown key" + _did_you_mean(key, _TOP_KEYS))
    tables = {key: _table(problems, data, key) for key in ("defaults", "sources", "channels", "health")}
    context = {"base_dir": base_dir}
    defaults = _load_defaults(problems, tables["defaults"], context)
    sources = _load_sources(problems, tables["sources"], defaults, base_dir, env)
    if not tables["sources"] and isinstance(data.get("sources", {}), dict):
        problems.add(("sources",), "no sources configured (add a [sources.NAME] table)")
    channels = _load_channels(problems, tables["channels"], check_url)
    rules = _load_rules(problems, data.get("rules", []), tables, sources, check_template)
    _references(problems, ("health", "channel"), tables["health"].get("channel"), tables["channels"], "channel")
    health = problems.validate(HealthConfig, tables["health"], ("health",))
    delivery = problems.validate(DeliveryConfig, _table(problems, data, "delivery"), ("delivery",))
    metrics = problems.validate(MetricsConfig, _table(problems, data, "metrics"), ("metrics",))
    log = problems.validate(LogConfig, _table(problems, data, "log"), ("log",))
    database = _database(problems, data.get("database", "orderwatch.db"), env, base_dir)
    if problems.lines or health is None or delivery is None or metrics is None or log is None:
        raise ConfigError(problems.lines, path=str(file))
    return Config(
        path=file.absolute(),
        database=database,
        sources=sources,
        channels=channels,
        rules=rules,
        delivery=delivery,
        health=health,
        metrics=metrics,
        log=log,
        defaults=defaults,
    )


def _load_defaults(problems: _Problems, raw: dict[str, Any], context: Mapping[str, Any]) -> DefaultsConfig:
    """``[defaults]`` validated; when some keys are bad, sources inherit only the good ones."""
    try:
        return DefaultsConfig.model_validate(raw, context=context)
    except ValidationError as err:
        problems.report(("defaults",), err, DefaultsConfig)
        bad = {error["loc"][0] for error in err.errors() if error["loc"]}
    try:
        return DefaultsConfig.model_validate({k: v for k, v in raw.items() if k not in bad}, context=context)
    except ValidationError:
        return DefaultsConfig()


def _named(problems: _Problems, loc: _Loc, table: Any) -> dict[str, Any] | None:
    """A ``[sources.NAME]``/``[channels.NAME]`` table with its ``name`` added from the key."""
    if not isinstance(table, dict):
        problems.add(loc, "expected a table", table)
        return None
    if not _NAME_RE.fullmatch(str(loc[-1])):
        problems.add(loc, 'names may hold only a-z, 0-9, "_" and "-"')
    if "name" in table:
        problems.add((*loc, "name"), f"unknown key (the name comes from the table's key [{_dotted(loc)}])")
    problems.silence((*loc, "name"))
    return {**table, "name": loc[-1]}


def _load_sources(
    problems: _Problems, raw: dict[str, Any], defaults: DefaultsConfig, base_dir: Path, environ: Mapping[str, str]
) -> dict[str, SourceConfig]:
    keys = [k for k in (*SourceConfig.model_fields, "token_file", "token_credential") if k != "name"]
    inherited = defaults.model_dump()
    sources = {}
    for name, table in raw.items():
        loc = ("sources", name)
        if (item := _named(problems, loc, table)) is not None:
            _resolve_token(problems, loc, item, base_dir, environ)
            found = problems.validate(SourceConfig, {**inherited, **item}, loc, {"base_dir": base_dir}, keys)
            sources.update({name: found} if found else {})
    return sources


def _load_channels(problems: _Problems, raw: dict[str, Any], check_url: Check | None) -> dict[str, ChannelConfig]:
    channels = {}
    for name, table in raw.items():
        loc = ("channels", name)
        if (item := _named(problems, loc, table)) is not None and (
            channel := problems.validate(ChannelConfig, item, loc, {}, ["urls", "digest_over"])
        ):
            channels[name] = channel
            for i, url in enumerate(channel.urls):
                if check_url and (problem := check_url(url.get_secret_value())):
                    problems.add((*loc, "urls", i), problem)
    return channels


def _load_rules(
    problems: _Problems,
    raw: Any,
    tables: Mapping[str, dict[str, Any]],
    sources: Mapping[str, SourceConfig],
    check_template: Check | None,
) -> tuple[RuleConfig, ...]:
    if not isinstance(raw, list):
        problems.add(("rules",), "expected a list of [[rules]] tables", raw)
        return ()
    known_states = {*CANONICAL_STATES, *(s for src in sources.values() for s in src.states.values())}
    rules: list[RuleConfig] = []
    first: dict[str, int] = {}
    for i, table in enumerate(raw):
        loc = ("rules", i)
        if not isinstance(table, dict):
            problems.add(loc, "expected a table", table)
            continue
        _references(problems, (*loc, "sources"), table.get("sources"), tables["sources"], "source")
        _references(problems, (*loc, "channels"), table.get("channels"), tables["channels"], "channel")
        rule = problems.validate(RuleConfig, {"name": f"rule-{i + 1}", **table}, loc)
        if rule is None:
            continue
        rules.append(rule)
        if rule.name in first or rule.name == "digest":
            why = f"duplicate rule name (also rules[{first.get(rule.name)}])"
            problems.add((*loc, "name"), why if rule.name in first else "reserved for digest messages", rule.name)
        first.setdefault(rule.name, i)
        for key, states in (("from", rule.from_states), ("to", rule.to)):
            for state in (s for s in states if s not in known_states):
                problems.add((*loc, key), "unknown state" + _did_you_mean(state, known_states), state)
        for key, text in (("title", rule.title), ("body", rule.body)):
            if check_template and text is not None and (problem := check_template(text)):
                problems.add((*loc, key), problem)
    return tuple(rules)


def inline_secrets(path: str | os.PathLike[str]) -> list[str]:
    """Keys of the config file at ``path`` that hold a secret written into the file itself (not ``${VAR}``, not a
    token file): source tokens, and channel URLs carrying a password or a token-like path."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    found: list[str] = []
    sources = raw.get("sources")
    for name, table in sources.items() if isinstance(sources, dict) else ():
        token = table.get("token") if isinstance(table, dict) else None
        if isinstance(token, str) and token and "${" not in token:
            found.append(f"sources.{name}.token")
    channels = raw.get("channels")
    for name, table in channels.items() if isinstance(channels, dict) else ():
        urls = table.get("urls") if isinstance(table, dict) else None
        for i, url in enumerate(urls if isinstance(urls, list) else ()):
            if isinstance(url, str) and "${" not in url and _url_holds_secret(url):
                found.append(f"channels.{name}.urls[{i}]")
    return found


def _url_holds_secret(url: str) -> bool:
    parts = urlsplit(url)
    if parts.password:
        return True
    return any(len(seg) >= 16 or (len(seg) >= 8 and any(c.isdigit() for c in seg)) for seg in parts.path.split("/"))


def readable_by_others(path: str | os.PathLike[str]) -> bool:
    """True when the file's mode lets its group or other users read it."""
    try:
        return bool(os.stat(path).st_mode & 0o044)
    except OSError:
        return False

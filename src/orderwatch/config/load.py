"""Loading the configuration: find the file, read the TOML, expand ``${VAR}``, resolve tokens and the database,
validate every table, and report every problem at once (one ``ConfigError``, one line per problem).

Tokens come from ``token``, ``token_file`` or ``token_credential`` (systemd ``LoadCredential=``); values from the
environment or a file are ``Tainted`` and never shown in a message.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from orderwatch.config.problems import Loc, Problems, Tainted, did_you_mean, dotted
from orderwatch.config.schema import (
    NAME_RE,
    ChannelConfig,
    DefaultsConfig,
    DeliveryConfig,
    FiltersConfig,
    HealthConfig,
    LogConfig,
    MetricsConfig,
    PagingConfig,
    RuleConfig,
    SourceConfig,
    SummaryConfig,
    resolve,
)
from orderwatch.config.settings import Config, DeliverySettings, HealthSettings, LogSettings, MetricsSettings
from orderwatch.core.model import CANONICAL_STATES
from orderwatch.errors import ConfigError
from orderwatch.sources import JSON_KIND, PRESETS
from orderwatch.sources.presets import with_preset

Check = Callable[[str], str | None]
_REF_RE: Final = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_TOP_KEYS: Final = (
    *("database", "defaults", "sources", "channels", "rules", "delivery", "health", "metrics", "log"),
    "summaries",
)
_TOKEN_KEYS: Final = ("token", "token_file", "token_credential")
_SEARCH_PATHS: Final = (Path("orderwatch.toml"), Path("/etc/orderwatch/orderwatch.toml"))


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


def _expand(value: Any, loc: Loc, environ: Mapping[str, str], problems: Problems) -> Any:
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
    return Tainted(expanded) if tainted else expanded


def _table(problems: Problems, data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if isinstance(value, dict):
        return value
    problems.add((key,), "expected a table", value)
    return {}


def _read_secret(problems: Problems, loc: Loc, path: Path, what: str) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        problems.add(loc, f"cannot read the {what} {path}: {reason}")
        return None
    if not text:
        problems.add(loc, f"the {what} {path} is empty")
    return Tainted(text) if text else None


def _resolve_token(
    problems: Problems, loc: Loc, item: dict[str, Any], base_dir: Path, environ: Mapping[str, str]
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
        token = _read_secret(problems, where, resolve(value, base_dir), "token file")
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


def _database(problems: Problems, value: Any, environ: Mapping[str, str], base_dir: Path) -> Path:
    """``database`` resolved: absolute as given; relative against $STATE_DIRECTORY, else the config's folder."""
    if not isinstance(value, str) or not value.strip():
        problems.add(("database",), "expected a file path", value)
        return base_dir / "orderwatch.db"
    state_dir = environ.get("STATE_DIRECTORY", "").split(":")[0]
    path = resolve(value, Path(state_dir).absolute() if state_dir else base_dir)
    if path.is_dir():
        problems.add(("database",), "is a directory; expected a file path", str(path))
    return path


def _references(problems: Problems, loc: Loc, value: Any, names: Iterable[str], what: str) -> None:
    """One problem per name in ``value`` that is not one of ``names``."""
    defined = sorted(names)
    for name in value if isinstance(value, list) else [value]:
        if isinstance(name, str) and name not in defined:
            shown = "<secret>" if isinstance(name, Tainted) else f'"{name}"'
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
    problems = Problems()
    data: dict[str, Any] = _expand(raw, (), env, problems)
    for key in data.keys() - set(_TOP_KEYS):
        problems.add((key,), "unknown key" + did_you_mean(key, _TOP_KEYS))
    tables = {key: _table(problems, data, key) for key in ("defaults", "sources", "channels", "health")}
    context = {"base_dir": base_dir}
    defaults = _load_defaults(problems, tables["defaults"], context)
    sources = _load_sources(problems, tables["sources"], defaults, base_dir, env)
    if not tables["sources"] and isinstance(data.get("sources", {}), dict):
        problems.add(("sources",), "no sources configured (add a [sources.NAME] table)")
    channels = _load_channels(problems, tables["channels"], check_url)
    rules = _load_rules(problems, data.get("rules", []), tables, sources, check_template)
    summaries = _load_summaries(problems, data.get("summaries", []), tables, check_template)
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
        sources={name: src.to_source() for name, src in sources.items()},
        channels={name: channel.to_channel() for name, channel in channels.items()},
        rules=tuple(rule.to_rule() for rule in rules),
        delivery=DeliverySettings(
            delivery.retry_initial, delivery.retry_max, delivery.give_up_after, delivery.interval
        ),
        health=HealthSettings(health.channel, health.failures, health.after),
        metrics=MetricsSettings(metrics.listen),
        log=LogSettings(log.format, log.level),
        summaries=tuple(s.to_summary(tuple(sources)) for s in summaries),
    )


def _load_defaults(problems: Problems, raw: dict[str, Any], context: Mapping[str, Any]) -> DefaultsConfig:
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


def _named(problems: Problems, loc: Loc, table: Any) -> dict[str, Any] | None:
    """A ``[sources.NAME]``/``[channels.NAME]`` table with its ``name`` added from the key."""
    if not isinstance(table, dict):
        problems.add(loc, "expected a table", table)
        return None
    if not NAME_RE.fullmatch(str(loc[-1])):
        problems.add(loc, 'names may hold only a-z, 0-9, "_" and "-"')
    if "name" in table:
        problems.add((*loc, "name"), f"unknown key (the name comes from the table's key [{dotted(loc)}])")
    problems.silence((*loc, "name"))
    return {**table, "name": loc[-1]}


def _load_sources(
    problems: Problems, raw: dict[str, Any], defaults: DefaultsConfig, base_dir: Path, environ: Mapping[str, str]
) -> dict[str, SourceConfig]:
    keys = [k for k in (*SourceConfig.model_fields, "token_file", "token_credential") if k != "name"]
    keys += [*PagingConfig.model_fields, *FiltersConfig.model_fields]  # "did you mean" inside paging, filters
    inherited = defaults.model_dump()
    sources = {}
    for name, table in raw.items():
        loc = ("sources", name)
        if (item := _named(problems, loc, table)) is not None:
            item = _json_source(problems, loc, item)
            _resolve_token(problems, loc, item, base_dir, environ)
            found = problems.validate(SourceConfig, {**inherited, **item}, loc, {"base_dir": base_dir}, keys)
            sources.update({name: found} if found else {})
    return sources


def _json_source(problems: Problems, loc: Loc, item: dict[str, Any]) -> dict[str, Any]:
    """A ``kind = "json"`` table laid over its preset's keys; an unknown preset, or ``incremental = true`` (every
    poll of a json source is a full sweep), is a problem."""
    if item.get("kind") != JSON_KIND:
        return item
    if item.get("incremental") is True:
        msg = 'incremental polls are not available for kind = "json" yet: every poll is a full sweep'
        problems.add((*loc, "incremental"), msg, True)
    preset = item.get("preset")
    if preset is None:
        return item
    if not isinstance(preset, str) or preset not in PRESETS:
        expected = ", ".join(f'"{name}"' for name in PRESETS)
        hint = did_you_mean(preset, PRESETS) if isinstance(preset, str) else ""
        problems.add((*loc, "preset"), f"unknown preset{hint}; expected one of {expected}", preset)
        problems.silence(loc)
        return item
    return with_preset(item, PRESETS[preset])


def _load_channels(problems: Problems, raw: dict[str, Any], check_url: Check | None) -> dict[str, ChannelConfig]:
    channels = {}
    for name, table in raw.items():
        loc = ("channels", name)
        if (item := _named(problems, loc, table)) is not None and (
            channel := problems.validate(
                ChannelConfig, item, loc, {}, ["urls", "digest_over", "quiet", "timezone", "days"]
            )
        ):
            channels[name] = channel
            for i, url in enumerate(channel.urls):
                if check_url and (problem := check_url(url.get_secret_value())):
                    problems.add((*loc, "urls", i), problem)
    return channels


def _load_rules(
    problems: Problems,
    raw: Any,
    tables: Mapping[str, dict[str, Any]],
    sources: Mapping[str, SourceConfig],
    check_template: Check | None,
) -> tuple[RuleConfig, ...]:
    known_states = {*CANONICAL_STATES, *(s for src in sources.values() for s in src.states.values())}
    rules: list[RuleConfig] = []
    first: dict[str, int] = {}
    for i, loc, table in _listed(problems, raw, "rules"):
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
                problems.add((*loc, key), "unknown state" + did_you_mean(state, known_states), state)
        _templates(problems, loc, check_template, title=rule.title, body=rule.body)
    return tuple(rules)


def _listed(problems: Problems, raw: Any, key: str) -> Iterator[tuple[int, Loc, dict[str, Any]]]:
    """The tables of an array of tables ``[[key]]``, with their index and key path; a problem for anything else."""
    if not isinstance(raw, list):
        problems.add((key,), f"expected a list of [[{key}]] tables", raw)
        return
    for i, table in enumerate(raw):
        if isinstance(table, dict):
            yield i, (key, i), table
        else:
            problems.add((key, i), "expected a table", table)


def _templates(problems: Problems, loc: Loc, check: Check | None, **texts: str | None) -> None:
    """A problem for each of ``texts`` (title, body) that does not compile as a template."""
    for key, text in texts.items():
        if check and text is not None and (problem := check(text)):
            problems.add((*loc, key), problem)


def _load_summaries(
    problems: Problems, raw: Any, tables: Mapping[str, dict[str, Any]], check_template: Check | None
) -> tuple[SummaryConfig, ...]:
    """``[[summaries]]``: each validated, its channel and sources known, names unique, templates compiling."""
    found: list[SummaryConfig] = []
    first: dict[str, int] = {}
    for i, loc, table in _listed(problems, raw, "summaries"):
        _references(problems, (*loc, "channel"), table.get("channel"), tables["channels"], "channel")
        _references(problems, (*loc, "sources"), table.get("sources"), tables["sources"], "source")
        summary = problems.validate(SummaryConfig, {"name": f"summary-{i + 1}", **table}, loc)
        if summary is None:
            continue
        found.append(summary)
        if summary.name in first:
            problems.add(
                (*loc, "name"), f"duplicate summary name (also summaries[{first[summary.name]}])", summary.name
            )
        first.setdefault(summary.name, i)
        _templates(problems, loc, check_template, title=summary.title, body=summary.body)
    return tuple(found)

"""The options every command takes: ``--config``, ``--database`` and ``--log-level``, before the command or after it.

``orderwatch --config x.toml poll`` and ``orderwatch poll --config x.toml`` are the same command: each option is
declared on the group and on every command (``global_options``), and every value given, wherever, is recorded in the
root context. ``given`` reads it back; an option given twice with different values is a usage error (exit 2), never
a silent choice of one. ``--config`` left out means ``$ORDERWATCH_CONFIG``, then the usual places (``load_config``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
Name = Literal["config", "database", "log_level"]
_KEY: Final = "orderwatch.given"
_FLAGS: Final[dict[str, str]] = {"config": "--config", "database": "--database", "log_level": "--log-level"}
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def _record(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> None:
    """Add the values of ``param`` given at this level to those given at any other."""
    if values and param.name is not None:
        given: dict[str, list[str]] = ctx.find_root().meta.setdefault(_KEY, {})
        given.setdefault(param.name, []).extend(values)


_OPTIONS: Final = (
    click.option(
        "--config",
        type=click.Path(dir_okay=False),
        multiple=True,
        expose_value=False,
        callback=_record,
        help="Config file (default: $ORDERWATCH_CONFIG, ./orderwatch.toml, /etc/orderwatch/orderwatch.toml).",
    ),
    click.option(
        "--database",
        type=click.Path(dir_okay=False),
        multiple=True,
        expose_value=False,
        callback=_record,
        help="Use this database instead of the config's.",
    ),
    click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS),
        multiple=True,
        expose_value=False,
        callback=_record,
        help="Override log.level.",
    ),
)


def global_options(command: F) -> F:
    """Declare ``--config``, ``--database`` and ``--log-level`` on ``command`` (a group or a command)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def given(ctx: click.Context, name: Name) -> str | None:
    """The value of the global option ``name`` wherever on the command line it was given; None when it was not.

    Raises ``click.UsageError`` when it was given more than once with different values.
    """
    values = list(dict.fromkeys(ctx.find_root().meta.get(_KEY, {}).get(name, [])))
    if len(values) > 1:
        shown = ", ".join(repr(v) for v in values)
        raise click.UsageError(f"{_FLAGS[name]} given more than once with different values ({shown}): give it once")
    return values[0] if values else None

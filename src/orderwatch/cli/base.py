"""What the commands share: exit codes, loading the config, opening the database, printing results in the chosen
format. Every command module imports it; it imports none of them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from orderwatch.cli.options import given
from orderwatch.cli.output import FORMATS, say
from orderwatch.errors import ConfigError, SchemaTooNew, StoreError

if TYPE_CHECKING:
    from orderwatch.cli.output import Format
    from orderwatch.config import Config
    from orderwatch.store import Store

T = TypeVar("T")
EXIT_FAILED = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Say ``message`` on stderr and exit with ``code``."""
    say(f"orderwatch: {message}", err=True)
    sys.exit(code)


def load_config(ctx: click.Context, *, deep: bool = False, logs: bool = True) -> Config:
    """The configuration named by ``--config`` (or found in the usual places); exit 2 with every problem if bad.

    ``deep`` also has apprise parse every channel URL and Jinja2 compile every template (commands that notify;
    the read-only commands skip it to start fast). ``logs=False`` (commands that only read and print) skips the
    logging set-up; their problems are one line on stderr.
    """
    from orderwatch import config as cfg
    from orderwatch.config import secrets
    from orderwatch.service import log

    meta = ctx.find_root().meta
    if meta.get("orderwatch.config") is not None:
        loaded: Config = meta["orderwatch.config"]
        return loaded
    template_check = url_check = None
    if deep:
        from orderwatch.core import render
        from orderwatch.delivery import notify

        template_check, url_check = render.check_template, notify.check_url
    try:
        conf = cfg.load_config(given(ctx, "config"), check_template=template_check, check_url=url_check)
    except ConfigError as exc:
        where = f"{exc.path}: " if exc.path else ""
        for problem in exc.problems:
            say(f"orderwatch: config error: {where}{problem}", err=True)
        sys.exit(EXIT_USAGE)
    secrets.remember_config(conf)
    if logs:
        log.setup(conf.log.format, given(ctx, "log_level") or conf.log.level)
    if conf.path is not None and cfg.readable_by_others(conf.path):
        inline = cfg.inline_secrets(conf.path)
        if inline:
            warning = (
                f"config file {conf.path} is readable by others and holds secrets inline ({', '.join(inline)}):"
                f" chmod 600 {conf.path} or use token_file / token_credential / ${{VAR}}"
            )
            if logs:
                import structlog

                structlog.get_logger("orderwatch.config").warning(warning)
            else:
                say(f"orderwatch: warning: {warning}", err=True)
    meta["orderwatch.config"] = conf
    return conf


def database_path(ctx: click.Context, conf: Config) -> str:
    """The database file: ``--database``, else the config's."""
    return str(given(ctx, "database") or conf.database)


def private_folders(database: str) -> None:
    """Create the missing folders above ``database`` owner-only (0700) whatever the umask: they will hold it."""
    from pathlib import Path

    if database == ":memory:":
        return
    missing = [p for p in Path(database).absolute().parents if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
            folder.chmod(0o700)  # the umask may have taken bits away; it cannot add them back
        except FileExistsError:
            continue
        except OSError:
            return  # Store.open meets the same problem and reports it, naming the database


def open_store(ctx: click.Context, conf: Config, *, readonly: bool) -> Store:
    """The store, opened for reading or writing; a database it cannot open is one line and exit 1 (2 when it
    is newer than this orderwatch)."""
    from orderwatch.store import Store

    database = database_path(ctx, conf)
    if not readonly:
        private_folders(database)
    try:
        return Store.open(database, readonly=readonly)
    except SchemaTooNew as exc:
        fail(str(exc), EXIT_USAGE)  # not a failure to retry: this orderwatch is older than the database
    except StoreError as exc:
        fail(str(exc))


def read_store(ctx: click.Context, query: Callable[[Store], T]) -> T:
    """Run ``query`` against the database opened read-only; a store problem is one line and exit 1."""
    conf = load_config(ctx, logs=False)
    store = open_store(ctx, conf, readonly=True)
    try:
        return query(store)
    except StoreError as exc:
        fail(str(exc))
    finally:
        store.close()


def emit_rows(
    fmt: str | None,
    title: str,
    columns: Sequence[str],
    cells: Iterable[Sequence[str]],
    dicts: Iterable[dict[str, Any]],
) -> None:
    """Print rows as a table (``cells``) or as JSON / NDJSON (``dicts``)."""
    from orderwatch.cli.output import print_json_array, print_ndjson, print_table

    chosen = output_format(fmt)
    if chosen == "table":
        print_table(title, columns, cells, sys.stdout)
    else:
        (print_json_array if chosen == "json" else print_ndjson)(dicts, sys.stdout)


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main`` in an event loop (asyncio) and return its result."""
    import anyio

    return anyio.run(main, backend="asyncio")


def output_format(fmt: str | None) -> Format:
    """The chosen output format, defaulting by whether stdout is a terminal."""
    from orderwatch.cli.output import default_format

    return default_format() if fmt is None else fmt  # type: ignore[return-value]


def known_sources(conf: Config, names: tuple[str, ...]) -> None:
    """Exit 2 naming the first of ``names`` that is not a configured source."""
    unknown = [n for n in names if n not in conf.sources]
    if unknown:
        fail(f"unknown source {unknown[0]!r} (configured: {', '.join(conf.sources) or 'none'})", EXIT_USAGE)


def iso_since(value: str) -> str:
    """``--since``: a duration back from now ("24h") or an ISO 8601 time, as the stored timestamp format."""
    from datetime import timedelta

    from orderwatch import clock
    from orderwatch.core.durations import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError:
        pass
    else:
        return clock.text(clock.now() - timedelta(seconds=seconds))
    try:
        return clock.text(clock.parse(value))
    except ValueError:
        raise click.BadParameter(
            f'expected a duration like "24h" or an ISO 8601 time, got {value!r}', param_hint="'--since'"
        ) from None


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="table (default on a terminal), json (one array) or ndjson (one object per line; default in pipes).",
)

"""How the CLI prints events, orders and outbox rows: a rich table for people, JSON or NDJSON for programs.

Everything shown comes from an API or the database, so none of it is trusted: table cells, plain lines and JSON go
through ``redact`` (no configured secret is ever printed, whatever quoted it) and ``printable`` (control characters
shown as escapes), and reach rich as ``Text``, never as markup. JSON stays exact JSON, with DEL, C1 and bidirectional
characters escaped as well.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TextIO

import click
import orjson

from orderwatch.core.model import Event
from orderwatch.core.printable import json_printable, printable

Format = Literal["table", "json", "ndjson"]
FORMATS = ("table", "json", "ndjson")


def default_format(stream: TextIO | None = None) -> Format:
    """``table`` on a terminal, ``ndjson`` otherwise (one JSON object per line suits pipes and scripts)."""
    return "table" if (stream or sys.stdout).isatty() else "ndjson"


def _dump(obj: Any) -> str:
    try:
        text = orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # a lone surrogate (the stdlib's JSON parser lets one in): escape it instead
        import json

        text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=str)
    return json_printable(_redact(text))


def _redact(text: str) -> str:
    from orderwatch.config.secrets import redact  # here: commands that print nothing skip the config's import

    return redact(text)


def shown(text: str) -> str:
    """``text`` fit for a terminal: configured secrets masked, control characters shown as escapes."""
    return printable(_redact(text))


def say(text: str, *, err: bool = False) -> None:
    """One line for people on stdout (or stderr), secrets masked and control characters shown as escapes."""
    click.echo(shown(text), err=err)


def print_json_array(rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    """One JSON array of ``rows``."""
    out.write(_dump(list(rows)) + "\n")


def print_ndjson(rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    """One JSON object per line, flushed per line (so ``--follow`` can be piped)."""
    for row in rows:
        out.write(_dump(row) + "\n")
    out.flush()


def _state(canonical: str | None, raw: str | None) -> str:
    if canonical is None:
        return "—"
    return canonical if raw is None or raw == canonical else f"{canonical} ({raw})"


def event_line(ev: Event) -> tuple[str, ...]:
    """The table cells of one event."""
    return (
        str(ev.id) if ev.id is not None else "",
        ev.detected_at.replace("T", " ")[:19],
        ev.source,
        ev.order_id,
        ev.kind,
        _state(ev.from_state, ev.raw_from),
        _state(ev.to_state, ev.raw_to),
    )


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]], out: TextIO) -> None:
    """A rich table (plain when ``out`` is not a terminal); every cell is shown as text, never read as markup."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=Text(shown(title)) if title is not None else None,
        header_style="bold",
        show_edge=False,
        pad_edge=False,
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(shown(cell)) for cell in row))
    Console(file=out, soft_wrap=False, markup=False, emoji=False, highlight=False).print(table)


EVENT_COLUMNS = ("id", "detected (UTC)", "source", "order", "kind", "from", "to")


def print_events(
    events: Sequence[Event],
    fmt: Format,
    out: TextIO,
    *,
    title: str | None = None,
    silenced: Mapping[int, Sequence[tuple[str, int]]] | None = None,
) -> None:
    """Events in ``fmt``: table, a JSON array, or NDJSON — the contract's fields in the machine formats.

    ``silenced``: event id -> (channel, silence id) for events whose notification a silence stopped; shown as a
    ``silenced`` column (table) or field (JSON: ``[{"channel": …, "silence": …}]``) when there are any."""
    stopped = silenced or {}

    def as_dict(e: Event) -> dict[str, Any]:
        found = stopped.get(e.id or 0)
        extra = {"silenced": [{"channel": c, "silence": i} for c, i in found]} if found else {}
        return {**e.as_dict(), **extra}

    def line(e: Event) -> tuple[str, ...]:
        found = stopped.get(e.id or 0)
        shown = ", ".join(f"#{i} ({c})" for c, i in found) if found else ""
        return (*event_line(e), shown) if stopped else event_line(e)

    columns = (*EVENT_COLUMNS, "silenced") if stopped else EVENT_COLUMNS
    emit: dict[str, Callable[[], None]] = {
        "json": lambda: print_json_array((as_dict(e) for e in events), out),
        "ndjson": lambda: print_ndjson((as_dict(e) for e in events), out),
        "table": lambda: print_table(title, columns, (line(e) for e in events), out),
    }
    emit[fmt]()

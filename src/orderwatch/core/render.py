"""Events → notification text. Pure: no I/O, no clock.

User templates are Jinja2 in orderwatch's sandbox (``core.sandbox``: Jinja2's immutable sandbox with a time and a
size limit; autoescape off). A missing field renders empty, and so does an attribute of a missing field
(``ChainableUndefined``); unsafe attribute access is blocked by the sandbox. A template that fails at render time, or
runs past ``RENDER_SECONDS`` (title and body together) or builds more than ``MAX_TEXT`` characters, never raises: the
default text is used and ``Notice.fallback`` says why.

Templates get ``event`` (the contract's JSON form of the event, ``Event.as_dict()``) and ``order`` (the order as
the API returned it).

Nothing from an API reaches a notice raw: its strings are shown with ``printable`` (control, bidirectional and
invisible characters as escapes), in the defaults and in what templates get; a rendered body keeps only its line
breaks and tabs.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from jinja2 import ChainableUndefined, Template, TemplateError

from orderwatch.core import sandbox
from orderwatch.core.model import Event
from orderwatch.core.printable import printable, printable_block
from orderwatch.core.sandbox import MAX_TEXT, RENDER_SECONDS

ARROW: Final = "→"
ELLIPSIS: Final = "…"
MAX_TITLE: Final = 250
MAX_FIELD: Final = 200
_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Notice:
    """A rendered notification. ``fallback``: why a user template was replaced by the default (None: it was not)."""

    title: str
    body: str
    fallback: str | None = None


_ENV: Final = sandbox.LimitedEnvironment(autoescape=False, undefined=ChainableUndefined, keep_trailing_newline=False)


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> Template:
    """The compiled template for ``source`` (cached: rules reuse a few templates)."""
    return _ENV.from_string(source)


def _one_line(text: str, limit: int) -> str:
    """``text`` on one line, whitespace collapsed, cut to ``limit`` characters."""
    flat = _SPACES.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + ELLIPSIS


def check_template(source: str) -> str | None:
    """None when ``source`` compiles as a template, else a one-line description of the problem."""
    try:
        _compile(source)
    except TemplateError as err:
        line = getattr(err, "lineno", None)
        where = f"line {line}: " if line else ""
        return _one_line(f"{where}{err.message or type(err).__name__}", 300)
    return None


# ---------------------------------------------------------------------------------------------- value formatting


def _text(value: Any) -> str | None:
    """A field shown to people: None for missing/empty/structured values, numbers without float noise."""
    if value is None or isinstance(value, dict | list | tuple):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    shown = printable(_one_line(str(value), MAX_FIELD))
    return shown or None


def _get(order: Mapping[str, Any], *path: str) -> str | None:
    """The displayable value at ``path`` in ``order`` (nested mappings), else None."""
    value: Any = order
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return _text(value)


def short_id(order_id: str) -> str:
    """An order id short enough for a title: a UUID's first 8 characters, long ids cut in the middle."""
    order_id = printable(_one_line(order_id, 200))
    if _UUID.match(order_id):
        return order_id[:8] + ELLIPSIS
    if len(order_id) > 24:
        return order_id[:10] + ELLIPSIS + order_id[-8:]
    return order_id


def _state(canonical: str | None, raw: str | None) -> str:
    """``Pending`` or ``Pending [unpaid]`` when the raw state differs; ``?`` when unknown."""
    shown = _text(canonical) or _text(raw) or "?"
    raw_shown = _text(raw)
    if raw_shown is not None and raw_shown != shown:
        return f"{shown} [{raw_shown}]"
    return shown


# ---------------------------------------------------------------------------------------------- defaults


def summary(event: Event) -> str:
    """The default title: one line naming the source, the order and the change."""
    oid = short_id(event.order_id)
    source = printable(_one_line(event.source, 40))
    if event.kind == "appeared":
        change = f"new order {oid} ({_text(event.to_state) or '?'})"
    elif event.kind == "vanished":
        change = f"order {oid} vanished (was {_text(event.from_state) or '?'})"
    else:
        change = f"order {oid} {_text(event.from_state) or '?'} {ARROW} {_text(event.to_state) or '?'}"
    return _one_line(f"[{source}] {change}", MAX_TITLE)


def _change_line(event: Event) -> str:
    """The ``State:`` line: from → to with raw states in brackets when they differ from canonical."""
    if event.kind == "appeared":
        return f"new {ARROW} {_state(event.to_state, event.raw_to)}"
    if event.kind == "vanished":
        return f"{_state(event.from_state, event.raw_from)} {ARROW} vanished"
    return f"{_state(event.from_state, event.raw_from)} {ARROW} {_state(event.to_state, event.raw_to)}"


Details = Sequence[tuple[str, str | None]]


def _default_body(event: Event, order: Any, details: Details) -> str:
    """The default body: one ``Label: value`` line per known field; unknown or missing fields are left out.
    ``details`` are the format's own lines (amount, product, payment), from its adapter."""
    fields: Mapping[str, Any] = order if isinstance(order, Mapping) else {}
    lines: list[tuple[str, str | None]] = [
        ("Source", _text(event.source)),
        ("Order", _text(event.order_id)),
        ("State", _change_line(event)),
        *((label, _text(value)) for label, value in details),
        ("Link", _get(fields, "pay_url")),
        ("Created", _get(fields, "created_at")),
        ("Paid", _get(fields, "paid_at")),
        ("Cancelled", _get(fields, "canceled_at")),
        ("Detected", _text(event.detected_at)),
    ]
    return "\n".join(f"{label}: {value}" for label, value in lines if value)


# ---------------------------------------------------------------------------------------------- public renderers


def order_of(event: Event) -> Any:
    """The order of ``event`` as the API returned it; ``{}`` when its stored copy cannot be read."""
    try:
        return event.order()
    except ValueError:  # corrupt order_json (orjson.JSONDecodeError is a ValueError)
        return {}


def _context(event: Event) -> dict[str, Any]:
    """The template's ``event`` dict (with the order); an unreadable stored order becomes ``{}``."""
    try:
        return event.as_dict()
    except ValueError:  # corrupt order_json (orjson.JSONDecodeError is a ValueError)
        return dataclasses.replace(event, order_json=None).as_dict()


def _shown(value: Any) -> Any:
    """``value`` (JSON-like) with every string in it, keys too, shown with ``printable``."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {_shown(k): _shown(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shown(v) for v in value]
    return value


def _render_user(source: str, context: Mapping[str, Any], budget: sandbox.Budget) -> tuple[str | None, str | None]:
    """``(text, None)`` for a template that renders to something within ``budget``, else ``(None, short reason)``."""
    try:
        text = sandbox.render(_compile(source), context, budget)
    except Exception as err:  # any failure of a user template falls back to the default; never raise
        return None, printable(_one_line(f"{type(err).__name__}: {err}", 200))
    if not text.strip():
        return None, "rendered empty"
    return text, None


def render_event(
    event: Event,
    *,
    title: str | None,
    body: str | None,
    details: Details = (),
    seconds: float = RENDER_SECONDS,
    max_text: int = MAX_TEXT,
) -> Notice:
    """The notice for one event: the user's templates when given and they render within ``seconds`` (both
    together) and ``max_text`` characters, else the defaults (with the format's ``details`` lines)."""
    budget = sandbox.Budget.start(seconds, max_text)
    as_dict = _context(event)
    order = as_dict["order"]
    shown = _shown(as_dict)
    context = {"event": shown, "order": shown["order"]}
    problems: list[str] = []

    title_text = summary(event)
    if title is not None:
        text, problem = _render_user(title, context, budget)
        if text is not None:
            title_text = printable(_one_line(text, MAX_TITLE))
        else:
            problems.append(f"title template: {problem}")

    body_text: str | None = None
    if body is not None:
        body_text, problem = _render_user(body, context, budget)
        if problem is not None:
            problems.append(f"body template: {problem}")
    if body_text is None:
        body_text = _default_body(event, order, details)
    return Notice(title=title_text, body=printable_block(body_text.strip()), fallback="; ".join(problems) or None)


def render_context(
    context: Mapping[str, Any],
    *,
    title: str,
    body: str,
    default_title: str,
    default_body: str,
    seconds: float = RENDER_SECONDS,
    max_text: int = MAX_TEXT,
) -> Notice:
    """A notice from templates over ``context`` (a scheduled summary's): each of ``title``/``body`` that fails or
    runs out of its limits is replaced by its default (rendered within a budget of its own)."""
    budget = sandbox.Budget.start(seconds, max_text)
    problems: list[str] = []

    def one(source: str, default: str, what: str) -> str:
        text, problem = _render_user(source, context, budget)
        if text is None and source != default:
            problems.append(f"{what} template: {problem}")
            text, problem = _render_user(default, context, sandbox.Budget.start(seconds, max_text))
        return text or ""

    title_text = printable(_one_line(one(title, default_title, "title"), MAX_TITLE))
    body_text = printable_block(one(body, default_body, "body").strip())
    return Notice(title=title_text, body=body_text, fallback="; ".join(problems) or None)


def stored_notice(title: str, body: str) -> Notice:
    """A notice written ahead of time (a health alert), fit to send like a rendered one."""
    return Notice(title=printable(_one_line(title, MAX_TITLE)), body=printable_block(body.strip()))


def _transition_key(event: Event) -> str:
    """How a digest counts an event: ``Pending → Expired``, ``appeared`` or ``vanished``."""
    if event.kind == "transition":
        return f"{_text(event.from_state) or '?'} {ARROW} {_text(event.to_state) or '?'}"
    return event.kind


def render_digest(events: Sequence[Event], *, first: int = 10) -> Notice:
    """One notice for many events: counts by transition, then the first ``first`` one-line summaries."""
    count = len(events)
    title = f"[orderwatch] {count} order change{'' if count == 1 else 's'}"
    counts = Counter(_transition_key(e) for e in events)
    lines = [f"{key}: {n}" for key, n in counts.most_common()]
    shown = [summary(e) for e in events[: max(first, 0)]]
    if shown:
        lines.append("")
        lines.extend(shown)
    if count > len(shown):
        lines.append(f"{ELLIPSIS} and {count - len(shown)} more")
    return Notice(title=title, body="\n".join(lines))


def test_notice() -> Notice:
    """The message ``orderwatch check --notify`` sends to every channel."""
    return Notice(
        title="[orderwatch] test notification",
        body="This is a test message from `orderwatch check --notify`.\nIf you can read it, this channel works.",
    )


test_notice.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into a test module

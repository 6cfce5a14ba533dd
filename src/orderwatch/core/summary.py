"""Scheduled summaries: totals of one period's events, by source and state, and their text. Pure.

``totals(events, amount_of)`` counts new orders (``appeared``), transitions by the state they went to, and vanished
orders, per source, with amounts summed per currency (``amount_of`` reads an event's order's amount; None: unknown).
``render_summary`` turns them into a notice through a Jinja2 template in orderwatch's sandbox (``core.render``'s),
the default saying "Yesterday on ace: 120 new orders, 95 paid, 3 refunded (USD 412.50), 7 expired". A template that
fails falls back to the default, and ``Notice.fallback`` says why, as for rules.

Templates get ``summary``: ``name``, ``period`` (the local date it fires on), ``label`` ("Yesterday", "Last week"),
``start``/``end`` (the contract's timestamps), and ``sources``: a list of ``{name, new, vanished, states: {State:
count}, amounts: {State: {CUR: "412.50"}}, text}``, ``text`` being the default's words for that source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from orderwatch.core.model import Event
from orderwatch.core.printable import printable
from orderwatch.core.schedule import Schedule

if TYPE_CHECKING:
    from orderwatch.core import render

DEFAULT_TITLE: Final = "[orderwatch] {{ summary.name }}: {{ summary.label | lower }} ({{ summary.period }})"
DEFAULT_BODY: Final = "{% for s in summary.sources %}{{ summary.label }} on {{ s.name }}: {{ s.text }}\n{% endfor %}"
_ORDER: Final = ("Paid", "Finished", "Refunded", "Expired", "Failed", "Cancelled", "Pending")
_WITH_AMOUNT: Final = frozenset({"Refunded"})
Amount = tuple[str, Decimal]
KINDS: Final = ("appeared", "transition", "vanished")


@dataclass(frozen=True, slots=True)
class Summary:
    """One ``[[summaries]]`` table: what to total (``sources``, empty: all; event ``kinds``), when, and where."""

    name: str
    channel: str
    schedule: Schedule
    sources: tuple[str, ...] = ()
    kinds: tuple[str, ...] = KINDS
    title: str | None = None
    body: str | None = None

    @property
    def label(self) -> str:
        """How the default text names the period: ``Yesterday`` or ``Last week``."""
        return "Yesterday" if self.schedule.every == "daily" else "Last week"


@dataclass(slots=True)
class SourceTotals:
    """One source's totals in a period."""

    name: str
    new: int = 0
    vanished: int = 0
    states: dict[str, int] = field(default_factory=dict)
    amounts: dict[str, dict[str, Decimal]] = field(default_factory=dict)

    def text(self) -> str:
        """``120 new orders, 95 paid, 3 refunded (USD 412.50), 7 expired``; ``no changes`` when nothing happened."""
        parts = [f"{self.new} new order{'' if self.new == 1 else 's'}"] if self.new else []
        ranked = sorted(self.states, key=lambda s: (_ORDER.index(s) if s in _ORDER else len(_ORDER), s))
        for state in ranked:
            words = f"{self.states[state]} {printable(state).lower()}"
            money = self.amounts.get(state, {})
            if state in _WITH_AMOUNT and money:
                words += " (" + ", ".join(f"{cur} {total}" for cur, total in sorted(money.items())) + ")"
            parts.append(words)
        if self.vanished:
            parts.append(f"{self.vanished} vanished")
        return ", ".join(parts) or "no changes"


def totals(
    events: Iterable[Event], sources: Sequence[str], amount_of: Callable[[Event], Amount | None]
) -> list[SourceTotals]:
    """The totals of ``events`` for each of ``sources`` (in that order; one with no events says "no changes")."""
    found = {name: SourceTotals(name) for name in sources}
    for event in events:
        one = found.get(event.source)
        if one is None:
            continue
        if event.kind == "appeared":
            one.new += 1
        elif event.kind == "vanished":
            one.vanished += 1
        else:
            state = event.to_state or event.raw_to or "?"
            one.states[state] = one.states.get(state, 0) + 1
            amount = amount_of(event)
            if amount is not None:
                money = one.amounts.setdefault(state, {})
                money[amount[0]] = money.get(amount[0], Decimal(0)) + amount[1]
    return list(found.values())


def context(name: str, period: str, label: str, start: str, end: str, found: Sequence[SourceTotals]) -> dict[str, Any]:
    """What a summary template gets as ``summary``."""
    return {
        "name": name,
        "period": period,
        "label": label,
        "start": start,
        "end": end,
        "sources": [
            {
                "name": printable(t.name),
                "new": t.new,
                "vanished": t.vanished,
                "states": dict(t.states),
                "amounts": {s: {c: str(v) for c, v in m.items()} for s, m in t.amounts.items()},
                "text": t.text(),
            }
            for t in found
        ],
    }


def render_summary(summary: Mapping[str, Any], *, title: str | None, body: str | None) -> render.Notice:
    """The notice of a summary: the user's templates (each falling back to the default on failure), else the
    defaults."""
    from orderwatch.core import render  # Jinja2 costs ~30 ms to import: only what sends a summary pays it

    return render.render_context(
        {"summary": summary},
        title=title or DEFAULT_TITLE,
        body=body or DEFAULT_BODY,
        default_title=DEFAULT_TITLE,
        default_body=DEFAULT_BODY,
    )

"""Routing: which events go to which channels, and when a channel gets one digest instead. Pure.

``Rule`` and ``Channel`` are the configured values (built by ``orderwatch.config``); ``router(rules, channels)`` is
the function a poll hands its events to.

``route(events, rules, digest_over)`` applies every rule to every event of one poll:

- every matching rule fires, but an event goes to a channel at most once per call: the first matching rule in
  file order wins for that channel (its templates are used);
- a channel that would get more than ``digest_over[channel]`` events gets ONE digest ``Delivery`` holding all of
  them instead (its rule is named ``"digest"``); a channel missing from ``digest_over`` never gets a digest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeAlias

from orderwatch.core.model import Event
from orderwatch.core.quiet import QuietHours
from orderwatch.core.secret import Secret

DIGEST_RULE: Final = "digest"
DEFAULT_EVENTS: Final = ("transition",)
DEFAULT_DIGEST_OVER: Final = 10


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[rules]]`` table: which events go to which channels. Empty ``from_states``/``to``/``sources``: any."""

    name: str
    channels: tuple[str, ...]
    events: tuple[str, ...] = DEFAULT_EVENTS
    from_states: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    title: str | None = None  # Jinja2 templates; None: the default text
    body: str | None = None
    urgent: bool = False  # its notifications pass through the channels' quiet hours
    amount: str | None = None  # dotted path to the order's amount (in the order as the API returned it)
    min_amount: Decimal | None = None  # only orders whose amount is at least this (None: any)


@dataclass(frozen=True, slots=True)
class Channel:
    """One ``[channels.NAME]`` table: a named set of apprise URLs (secret: they hold tokens and passwords)."""

    name: str
    urls: tuple[Secret, ...]
    digest_over: int = DEFAULT_DIGEST_OVER
    quiet: QuietHours | None = None  # notifications wait out these hours (urgent rules' excepted)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification to send to one channel: one event, or a digest of several (indexes into ``events``)."""

    channel: str
    rule: str
    event_indexes: tuple[int, ...]
    digest: bool


def _state_in(state: str | None, wanted: Sequence[str]) -> bool:
    """True when ``wanted`` is empty (any) or holds ``state``, compared case-insensitively."""
    if not wanted:
        return True
    if state is None:
        return False
    folded = state.casefold()
    return any(folded == w.casefold() for w in wanted)


def matches(rule: Rule, event: Event) -> bool:
    """True when ``rule`` selects ``event``.

    The kind must be in ``rule.events`` (empty: transitions only, the documented default), the source in
    ``rule.sources`` (empty: all), the from-state in ``rule.from_states`` and the to-state in ``rule.to`` (empty:
    any), and, when the rule has ``min_amount``, the order's amount at ``amount`` at least that. An ``appeared``
    event has only a to-state (the state it appeared in) and a ``vanished`` event only a
    from-state (its last state), so a non-empty ``from_states`` never selects ``appeared`` and a non-empty ``to``
    never selects ``vanished``.
    """
    kinds = rule.events or DEFAULT_EVENTS
    if event.kind.casefold() not in {k.casefold() for k in kinds}:
        return False
    if rule.sources and event.source not in rule.sources:
        return False
    from_state = None if event.kind == "appeared" else event.from_state
    to_state = None if event.kind == "vanished" else event.to_state
    if not (_state_in(from_state, rule.from_states) and _state_in(to_state, rule.to)):
        return False
    return rule.min_amount is None or _amount_at_least(event, rule.amount or "", rule.min_amount)


def _amount_at_least(event: Event, path: str, least: Decimal) -> bool:
    """True when the order of ``event`` has a number (or numeric text) at the dotted ``path`` that is at least
    ``least``; an order without one, or one whose stored copy cannot be read, is not selected."""
    try:
        value: Any = event.order()
    except ValueError:
        return False
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return False
    try:
        return Decimal(str(value).strip()) >= least
    except InvalidOperation:
        return False


def route(events: Sequence[Event], rules: Sequence[Rule], digest_over: Mapping[str, int]) -> list[Delivery]:
    """The deliveries for one poll's ``events``: in event order, and for one event in rule and channel order (a
    digest takes the place of its first event)."""
    # channel -> [(event index, position among that event's channels, rule name)]
    chosen: dict[str, list[tuple[int, int, str]]] = {}
    for index, event in enumerate(events):
        taken: list[str] = []
        for rule in rules:
            if not matches(rule, event):
                continue
            for channel in rule.channels:
                if channel not in taken:
                    chosen.setdefault(channel, []).append((index, len(taken), rule.name))
                    taken.append(channel)

    ordered: list[tuple[int, int, Delivery]] = []
    for channel, picks in chosen.items():
        limit = digest_over.get(channel)
        if limit is not None and len(picks) > limit:
            first, position, _ = picks[0]
            indexes = tuple(index for index, _, _ in picks)
            ordered.append((first, position, Delivery(channel, DIGEST_RULE, indexes, digest=True)))
            continue
        for index, position, rule_name in picks:
            ordered.append((index, position, Delivery(channel, rule_name, (index,), digest=False)))
    ordered.sort(key=lambda item: (item[0], item[1]))
    return [delivery for _, _, delivery in ordered]


Router: TypeAlias = Callable[[Sequence[Event]], Sequence[Delivery]]


def no_routes(events: Sequence[Event]) -> Sequence[Delivery]:
    """A router that sends nothing (no rules configured)."""
    return ()


def router(rules: Sequence[Rule], channels: Mapping[str, Channel]) -> Router:
    """The function that turns one poll's events into deliveries, for these rules and channels."""
    if not rules:
        return no_routes
    chosen = tuple(rules)
    digest_over = {name: channel.digest_over for name, channel in channels.items()}

    def route_events(events: Sequence[Event]) -> Sequence[Delivery]:
        return route(events, chosen, digest_over) if events else ()

    return route_events

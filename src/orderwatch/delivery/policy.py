"""Notification policies at send time: silences, quiet hours, and the one digest that ends quiet hours.

Read from the database (and the running config) each time the deliverer claims rows, so a silence added or expired
from the CLI counts at once, without a restart. For each claimed row, in order:

1. **Silences** (rows of events only): an event is stopped by the first silence in force whose source is the
   event's and whose order (if given) is the event's order and whose rule (if given) is the row's rule, or, for a
   digest row, a rule that selects the event for this channel. A row whose every event is stopped is marked
   ``silenced`` (by that silence) and not sent; a digest with some events stopped announces the others only. The
   events stay recorded; which were stopped, on which channel, by which silence is kept (``orderwatch changes``).
2. **Quiet hours** of the row's channel: unless the row is urgent, a row claimed inside them waits until they end
   (``hold = 'quiet'``, due then). A row is urgent when its rule has ``urgent = true``, or when a rule with
   ``urgent = true`` sends to this channel and selects one of its events. Health alerts and summaries wait too.
3. **The end of quiet hours**: rows of events that waited them out and are due together go out as ONE digest per
   channel (counts by transition, the first lines, "and N more"); a single one goes out as it was. A health alert
   or summary that waited goes out on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from orderwatch import clock
from orderwatch.core.model import Event
from orderwatch.core.quiet import quiet_until
from orderwatch.core.rules import DIGEST_RULE, Channel, Rule, matches

if TYPE_CHECKING:
    from orderwatch.store import OutboxRow, SilenceRow, Store

log = structlog.get_logger("orderwatch.delivery.policy")
QUIET: str = "quiet"


@dataclass(slots=True)
class Sifted:
    """What to send now: rows one by one, and the rows of each channel that waited out its quiet hours (one group a
    channel, to send as one digest when it holds more than one row)."""

    rows: list[OutboxRow] = field(default_factory=list)
    groups: list[list[OutboxRow]] = field(default_factory=list)


def _rule_selects(rule: Rule | None, row: OutboxRow, event: Event) -> bool:
    """True when ``rule`` is the row's rule, or selects ``event`` for the row's channel (a digest row)."""
    if rule is None:
        return False
    if row.rule == rule.name:
        return True
    return row.rule == DIGEST_RULE and row.channel in rule.channels and matches(rule, event)


def stopped_by(
    silences: Sequence[SilenceRow], rules: Mapping[str, Rule], row: OutboxRow, event: Event
) -> SilenceRow | None:
    """The first silence in force that stops ``event`` of ``row``, or None."""
    for silence in silences:
        if silence.source != event.source:
            continue
        if silence.order_id is not None and silence.order_id != event.order_id:
            continue
        if silence.rule is not None and not (
            row.rule == silence.rule or _rule_selects(rules.get(silence.rule), row, event)
        ):
            continue
        return silence
    return None


def urgent(rules: Mapping[str, Rule], row: OutboxRow, events: Sequence[Event]) -> bool:
    """True when ``row`` passes through quiet hours: its rule is urgent, or an urgent rule of its channel selects
    one of its events (another rule may have won the event for the channel)."""
    own = rules.get(row.rule)
    if own is not None and own.urgent:
        return True
    return any(
        row.channel in rule.channels and matches(rule, event)
        for rule in rules.values()
        if rule.urgent
        for event in events
    )


def sift(
    store: Store, rows: Sequence[OutboxRow], now: datetime, channels: Mapping[str, Channel], rules: Mapping[str, Rule]
) -> Sifted:
    """Apply silences and quiet hours to claimed ``rows`` (blocking: runs in a worker thread); what is left to send
    now. Rows silenced or held are released from their lease here."""
    if not rows:
        return Sifted()
    holds = store.holds([r.id for r in rows])
    silences = store.active_silences(now=clock.text(now))
    out = Sifted()
    released: dict[str, list[OutboxRow]] = {}
    for claimed in rows:
        row = _sift_one(store, claimed, now, silences, channels, rules)
        if row is None:
            continue
        if holds.get(row.id, (None, None))[0] == QUIET and row.title is None:
            released.setdefault(row.channel, []).append(row)
        else:
            out.rows.append(row)
    out.groups.extend(released.values())
    out.rows.sort(key=lambda r: r.id)
    return out


def _sift_one(
    store: Store,
    row: OutboxRow,
    now: datetime,
    silences: Sequence[SilenceRow],
    channels: Mapping[str, Channel],
    rules: Mapping[str, Rule],
) -> OutboxRow | None:
    """``row`` as it is to be sent now (without the events silences stopped), or None: silenced, or held."""
    events = store.events_by_id(row.event_ids) if row.title is None else []
    if silences and events:
        stopped = {e.id or 0: s.id for e in events if (s := stopped_by(silences, rules, row, e)) is not None}
        if stopped and len(stopped) == len(events):
            store.silence_row(row.id, row.channel, stopped)
            log.info("notification silenced", outbox_id=row.id, channel=row.channel, silence=min(stopped.values()))
            return None
        if stopped:
            keep = [e.id or 0 for e in events if (e.id or 0) not in stopped]
            store.narrow_row(row.id, row.channel, keep, stopped)
            log.info("events silenced in a digest", outbox_id=row.id, channel=row.channel, silenced=len(stopped))
            row = dataclasses.replace(row, event_ids=tuple(keep))
            events = [e for e in events if (e.id or 0) not in stopped]
    channel = channels.get(row.channel)
    if channel is not None and channel.quiet is not None and not urgent(rules, row, events):
        until = quiet_until(channel.quiet, now)
        if until is not None:
            store.hold(row.id, until=clock.text(until), reason=QUIET)
            log.info("held for quiet hours", outbox_id=row.id, channel=row.channel, until=clock.text(until))
            return None
    return row

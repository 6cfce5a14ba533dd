"""Scheduled summaries, queued when due: the latest period of each ``[[summaries]]`` schedule that has fired and
was not queued yet is totalled from the events table, rendered, and queued in the outbox with its record, in one
transaction (``Store.queue_summary``), so a period is queued once, ever, whatever restarts or kill -9 come.

Only the latest period is queued: a daemon that was down when one fired sends it when it starts; older missed
periods are skipped. A summary seen for the first time sends nothing for the period that fired before it was
configured (its record is kept with no outbox row): its first message is the next one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Final

import structlog

from orderwatch import clock
from orderwatch.config.secrets import redact
from orderwatch.core import render, schedule, summary
from orderwatch.core.model import Event
from orderwatch.delivery.deliverer import details_for
from orderwatch.sources import Source

if TYPE_CHECKING:
    from orderwatch.store import Store

log = structlog.get_logger("orderwatch.delivery.summaries")
_MONEY: Final = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z]{3})\b")


@dataclass(frozen=True, slots=True)
class Queued:
    """A summary period queued now."""

    summary: str
    period: str
    outbox_id: int


def amounts(sources: Mapping[str, Source]) -> Callable[[Event], summary.Amount | None]:
    """Reads an event's amount from its source format's own lines (``12.50 USD``, ``5 CNY``); None when none."""
    details = details_for(sources)

    def amount_of(event: Event) -> summary.Amount | None:
        for _label, value in details(event, render.order_of(event)):
            match = _MONEY.match(value or "")
            if match is not None:
                try:
                    return match[2], Decimal(match[1])
                except InvalidOperation:
                    return None
        return None

    return amount_of


def queue_due(
    store: Store, summaries: Sequence[summary.Summary], sources: Mapping[str, Source], now: datetime
) -> list[Queued]:
    """Queue every summary whose latest period is due and not yet queued (blocking: a worker thread)."""
    queued: list[Queued] = []
    stamp = clock.text(now)
    for one in summaries:
        period = schedule.latest(one.schedule, now)
        if store.summary_queued(one.name, period.name):
            continue
        if store.summary_new(one.name, period.name, now=stamp):
            upcoming = clock.text(schedule.following(one.schedule, now).fires)
            log.info("summary scheduled", summary=one.name, first=upcoming, channel=one.channel)
            continue
        start, end = clock.text(period.start), clock.text(period.end)
        events = store.events_between(start, end, one.sources, one.kinds)
        found = summary.totals(events, one.sources, amounts(sources))
        context = summary.context(one.name, period.name, one.label, start, end, found)
        notice = summary.render_summary(context, title=one.title, body=one.body)
        if notice.fallback:
            log.warning("summary template failed; default used", summary=one.name, reason=notice.fallback)
        row_id = store.queue_summary(
            one.name, period.name, one.channel, redact(notice.title), redact(notice.body), now=stamp
        )
        if row_id is not None:
            log.info("summary queued", summary=one.name, period=period.name, outbox_id=row_id, events=len(events))
            queued.append(Queued(one.name, period.name, row_id))
    return queued

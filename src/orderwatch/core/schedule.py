"""Scheduled summaries: which period a schedule like ``"daily 08:00"`` or ``"weekly mon 08:00"`` has due at a
moment, and when it fires next. Pure.

A daily summary fires at its local time every day and covers the day before, midnight to midnight local time; a
weekly one fires on its day and covers the seven days before that day. A period is named by the local date it
fires on (``2026-11-23``), so it fires once per local day whatever the clocks do: on the day they change, 08:00
exists once, and a wall time that does not exist (02:30 when clocks go forward) is taken with the offset before
the change, as ``zoneinfo`` does (03:30 after the change).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal

from orderwatch.core.quiet import DAYS, parse_clock, zone

_SCHEDULE: Final = re.compile(r"\s*(daily|weekly)\s+(?:([a-z]+)\s+)?(\S+)\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a summary fires: ``every`` day (or week, on ``weekday``, Monday 0) at ``at`` local time in ``zone``."""

    every: Literal["daily", "weekly"]
    at: time
    weekday: int = 0
    zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Period:
    """One firing of a schedule: its name (the local date it fires on), when it fires, and the span it covers
    (``start`` inclusive, ``end`` exclusive), all moments in UTC."""

    name: str
    fires: datetime
    start: datetime
    end: datetime


def parse_schedule(text: str, zone_name: str = "UTC") -> Schedule:
    """``"daily 08:00"`` or ``"weekly mon 08:00"`` as a ``Schedule``; ``ValueError`` naming the expected form."""
    form = 'expected "daily HH:MM" or "weekly DAY HH:MM" (DAY: mon … sun)'
    match = _SCHEDULE.fullmatch(text)
    if match is None:
        raise ValueError(form)
    every: Literal["daily", "weekly"] = "daily" if match[1].lower() == "daily" else "weekly"
    day = (match[2] or "").lower()
    if (every == "daily") == bool(day) or (day and day not in DAYS):
        raise ValueError(form)
    try:
        at = parse_clock(match[3])
    except ValueError:
        raise ValueError(form) from None
    zone(zone_name)
    return Schedule(every, at, DAYS.index(day) if day else 0, zone_name)


def _period(s: Schedule, day: date) -> Period:
    """The period that fires on local ``day``."""
    tz = zone(s.zone)
    span = 1 if s.every == "daily" else 7
    fires = datetime.combine(day, s.at, tz).astimezone(UTC)
    start = datetime.combine(day - timedelta(days=span), time(0), tz).astimezone(UTC)
    end = datetime.combine(day, time(0), tz).astimezone(UTC)
    return Period(day.isoformat(), fires, start, end)


def _fires_on(s: Schedule, day: date) -> bool:
    return s.every == "daily" or day.weekday() == s.weekday


def latest(s: Schedule, when: datetime) -> Period:
    """The last period that fired at or before ``when``."""
    day = when.astimezone(zone(s.zone)).date()
    moment = when.astimezone(UTC)
    for back in range(16):
        candidate = day - timedelta(days=back)
        if _fires_on(s, candidate):
            period = _period(s, candidate)
            if period.fires <= moment:
                return period
    raise AssertionError("a daily or weekly schedule fires within two weeks")  # pragma: no cover


def following(s: Schedule, when: datetime) -> Period:
    """The first period that fires after ``when``."""
    day = when.astimezone(zone(s.zone)).date()
    moment = when.astimezone(UTC)
    for ahead in range(-1, 16):
        candidate = day + timedelta(days=ahead)
        if _fires_on(s, candidate):
            period = _period(s, candidate)
            if period.fires > moment:
                return period
    raise AssertionError("a daily or weekly schedule fires within two weeks")  # pragma: no cover

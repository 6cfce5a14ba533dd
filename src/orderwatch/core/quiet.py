"""Quiet hours: is this moment inside a channel's quiet window, and when does the window end. Pure.

A window is written ``"22:00-07:00"`` in local time of a zone (``zoneinfo``); it may cross midnight (it then ends on
the next day). ``days`` are the days a window *starts* on (``["fri", "sat"]`` with ``"22:00-07:00"``: Friday 22:00
to Saturday 07:00, and Saturday 22:00 to Sunday 07:00); none: every day. Moments are compared in UTC, so a window
on a day the clocks change is as long as the wall clock says (one hour more or less), and a wall time that does
not exist that day (02:30 when clocks go forward) is taken with the offset before the change, as ``zoneinfo`` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK: Final = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_WINDOW: Final = re.compile(r"\s*(\S+)\s*-\s*(\S+)\s*")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A channel's quiet window: from ``start`` to ``end`` local time in ``zone``, starting on ``days`` (weekday
    numbers, Monday 0; empty: every day)."""

    start: time
    end: time
    zone: str = "UTC"
    days: frozenset[int] = frozenset()

    def describe(self) -> str:
        """``22:00-07:00 Europe/Berlin`` (with the days when not every day)."""
        days = "" if not self.days else " on " + ",".join(DAYS[d] for d in sorted(self.days))
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone}{days}"


def parse_clock(text: str) -> time:
    """``"07:00"`` as a time of day; ``ValueError`` naming the expected form."""
    match = _CLOCK.fullmatch(text.strip())
    if match is None:
        raise ValueError('expected a time of day like "07:00" (24-hour clock)')
    return time(int(match[1]), int(match[2]))


def parse_window(text: str) -> tuple[time, time]:
    """``"22:00-07:00"`` as (start, end); ``ValueError`` when it is not one or starts where it ends."""
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError('expected a window like "22:00-07:00"')
    try:
        start, end = parse_clock(match[1]), parse_clock(match[2])
    except ValueError:
        raise ValueError('expected a window like "22:00-07:00" (24-hour clock)') from None
    if start == end:
        raise ValueError("the window must end at another time than it starts")
    return start, end


def parse_days(names: Iterable[str]) -> frozenset[int]:
    """``["mon", "tue"]`` as weekday numbers; ``ValueError`` naming the first unknown day."""
    found: set[int] = set()
    for name in names:
        key = name.strip().casefold()[:3]
        if key not in DAYS or len(name.strip()) < 3:
            raise ValueError(f'unknown day "{name}" (expected one of {", ".join(DAYS)})')
        found.add(DAYS.index(key))
    return frozenset(found)


def zone(name: str) -> ZoneInfo:
    """The ``zoneinfo`` zone called ``name``; ``ValueError`` when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError('unknown time zone (expected an IANA name like "Europe/Berlin" or "UTC")') from None


def _windows(q: QuietHours, around: date) -> list[tuple[datetime, datetime]]:
    """The windows that start on the day before ``around``, on it and the day after, in UTC."""
    tz = zone(q.zone)
    found = []
    for offset in (-1, 0, 1):
        day = around + timedelta(days=offset)
        if q.days and day.weekday() not in q.days:
            continue
        end_day = day if q.end > q.start else day + timedelta(days=1)
        start = datetime.combine(day, q.start, tz).astimezone(UTC)
        end = datetime.combine(end_day, q.end, tz).astimezone(UTC)
        if end > start:
            found.append((start, end))
    return found


def quiet_until(q: QuietHours, when: datetime) -> datetime | None:
    """None when ``when`` is outside the quiet hours ``q``; else the moment (UTC) they end, following windows that
    join up."""
    until: datetime | None = None
    moment = when.astimezone(UTC)
    for _ in range(8):  # windows that end where the next starts chain; a week of them at the most
        inside = [end for start, end in _windows(q, moment.astimezone(zone(q.zone)).date()) if start <= moment < end]
        if not inside:
            return until
        until = moment = max(inside)
    return until

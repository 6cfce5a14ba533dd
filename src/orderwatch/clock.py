"""Time: the one clock and the one timestamp format. Pure but for ``now()``.

Inside orderwatch a moment is a timezone-aware ``datetime`` in UTC. It becomes text only at the edges — the
database, JSON output, log lines — always in one form, the contract's ``2026-11-22T10:00:00.123456Z``
(``text``/``parse``). People get shorter forms: ``to_second`` (``2026-11-22T10:00:00Z``) and ``time_of_day``
(``10:00:00``). Code that needs the time takes a ``Clock`` so tests can give it any moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, TypeAlias

Clock: TypeAlias = Callable[[], datetime]
FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


def monotonic() -> float:
    """Seconds on a clock that never goes back, for deadlines and durations (not a time of day)."""
    return time.monotonic()


def now() -> datetime:
    """The current moment, in UTC."""
    return datetime.now(UTC)


def text(when: datetime) -> str:
    """``when`` as the contract's timestamp: ``2026-11-22T10:00:00.123456Z``."""
    return when.astimezone(UTC).strftime(FORMAT)


def now_text() -> str:
    """The current moment as the contract's timestamp."""
    return text(now())


def parse(value: str) -> datetime:
    """A timestamp written by ``text`` (or any ISO 8601 time; one without a zone is taken as UTC) as a UTC
    ``datetime``; ``ValueError`` when it is not one."""
    when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def iso(value: object) -> str | None:
    """An ISO 8601 time in the one text form that sorts like the time (``text``'s); None when ``value`` is not one.
    Text already in that form (the usual case) is returned as it is, without parsing."""
    if type(value) is not str:
        return None
    if len(value) == 27 and value[10] == "T" and value[19] == "." and value[26] == "Z":
        return value
    try:
        return text(parse(value))
    except ValueError:
        return None


def to_second(value: datetime | str | None) -> str:
    """A moment to the second for people (``2026-11-22T10:00:00Z``); empty when unknown or unreadable."""
    if value is None or value == "":
        return ""
    try:
        when = parse(value) if isinstance(value, str) else value.astimezone(UTC)
    except ValueError:
        return ""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def time_of_day(when: datetime) -> str:
    """``10:00:00`` (UTC)."""
    return when.astimezone(UTC).strftime("%H:%M:%S")


def seconds_between(earlier: datetime | str, later: datetime | str) -> float:
    """Seconds from ``earlier`` to ``later`` (negative when ``later`` is earlier)."""
    a = parse(earlier) if isinstance(earlier, str) else earlier
    b = parse(later) if isinstance(later, str) else later
    return (b - a).total_seconds()

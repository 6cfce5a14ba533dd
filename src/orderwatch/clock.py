"""Time: the one clock and the one timestamp format. Pure but for ``now()``.

Inside orderwatch a moment is a timezone-aware ``datetime`` in UTC. It becomes text only at the edges — the
database, JSON output, log lines — always in one form, the contract's ``2026-11-22T10:00:00.123456Z``
(``text``/``parse``). People get shorter forms: ``to_second`` (``2026-11-22T10:00:00Z``) and ``time_of_day``
(``10:00:00``). Code that needs the time takes a ``Clock`` so tests can give it any moment.

A testing aid for the wall-clock parts (quiet hours, scheduled summaries, silences) of a whole process: when
``$ORDERWATCH_CLOCK_FILE`` names a file holding an ISO 8601 time, ``now()`` is that time plus the real time passed
since the file was last written (its mtime): write ``2026-11-23T22:59:55Z`` into it and the daemon lives through
23:00 five seconds later; write it again to jump. Only ``now()`` follows it (the scheduler's intervals, timeouts and
``monotonic()`` do not). A file that cannot be read or holds no time raises ``ClockError`` (never the real time
silently).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeAlias

Clock: TypeAlias = Callable[[], datetime]
FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
CLOCK_FILE_VARIABLE: Final = "ORDERWATCH_CLOCK_FILE"


class ClockError(Exception):
    """``$ORDERWATCH_CLOCK_FILE`` is set but its file holds no readable time (the CLI reports it, exit 2; this
    module stands below ``errors`` in the layers, so the class is its own)."""


_fake: dict[str, tuple[tuple[int, int, int], datetime, float]] = {}  # path -> (stat key, time written, mtime)


def monotonic() -> float:
    """Seconds on a clock that never goes back, for deadlines and durations (not a time of day)."""
    return time.monotonic()


def now() -> datetime:
    """The current moment, in UTC (moved by ``$ORDERWATCH_CLOCK_FILE``: see the module)."""
    path = os.environ.get(CLOCK_FILE_VARIABLE)
    if not path:
        return datetime.now(UTC)
    return _from_file(path)


def _from_file(path: str) -> datetime:
    """The time in the clock file plus the real time passed since it was written."""
    try:
        info = os.stat(path)
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        known = _fake.get(path)
        if known is None or known[0] != key:
            with open(path, encoding="utf-8") as file:
                written = parse(file.read())
            known = _fake[path] = (key, written, info.st_mtime_ns / 1e9)
    except (OSError, ValueError) as exc:
        raise ClockError(
            f"${CLOCK_FILE_VARIABLE} names {path}, which does not hold an ISO 8601 time ({exc}):"
            " write one into it, or unset the variable to use the real clock"
        ) from None
    return known[1] + timedelta(seconds=max(0.0, time.time() - known[2]))


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

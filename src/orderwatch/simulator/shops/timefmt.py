"""Timestamps as each API writes them, and ISO 8601 / RFC 3339 as each API reads them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

# Seconds required, fraction and offset optional ("Z", "+02", "+02:00", "+0200"); "T", "t" or a space between.
_ISO: Final = re.compile(
    r"^(?P<date>\d{4}-\d\d-\d\d)[Tt ](?P<time>\d\d:\d\d:\d\d)(?P<frac>\.\d+)?"
    r"(?P<tz>[Zz]|[+-]\d\d(?::?\d\d)?)?$"
)


def whole_seconds(dt: datetime) -> datetime:
    """``dt`` without its microseconds."""
    return dt.replace(microsecond=0)


def iso_z(dt: datetime, *, micro: bool = False) -> str:
    """``2024-06-15T10:00:00Z`` (``.123456Z`` with ``micro``)."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(dt: datetime) -> str:
    """Go's ``RFC3339Nano`` in UTC: trailing zeros of the fraction dropped (``08.3Z``), no fraction when zero."""
    dt = dt.astimezone(UTC)
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def local_naive(dt: datetime, offset: timedelta) -> str:
    """The wall-clock time at UTC ``offset``, without any zone designator: ``2024-06-15T12:00:00``."""
    return (dt.astimezone(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%S")


def with_offset(dt: datetime, offset: timedelta) -> str:
    """``2024-06-15T06:00:00-04:00``: whole seconds at UTC ``offset``."""
    return dt.astimezone(timezone(offset)).isoformat(timespec="seconds")


def unix(dt: datetime) -> int:
    """Whole seconds since the epoch."""
    return int(dt.timestamp())


def parse_iso(text: str) -> datetime | None:
    """Parse ``2024-06-15T10:00:00[.fff][Z|+hh[:mm]]``; naive when no offset is given; None when malformed."""
    match = _ISO.match(text.strip())
    if match is None:
        return None
    frac = (match["frac"] or "")[:7]  # fromisoformat takes at most 6 digits
    tz = match["tz"] or ""
    if tz in {"Z", "z"}:
        tz = "+00:00"
    elif tz and ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:] or '00'}"
    try:
        return datetime.fromisoformat(f"{match['date']}T{match['time']}{frac}{tz}")
    except ValueError:  # 2024-02-30, 25:00:00, ...
        return None


def aware(dt: datetime, assume: timedelta = timedelta(0)) -> datetime:
    """``dt`` as an aware datetime; a naive one is read as wall-clock time at UTC offset ``assume``."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone(assume))

"""Durations as people write them ("45s", "5m", "1h30m", "2d", "250ms") and as orderwatch shows them. Pure."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Final

_NUMBER: Final = r"\d+(?:\.\d+)?"
_DURATION_RE: Final = re.compile(
    rf"(?:(?P<d>{_NUMBER})d)?\s*(?:(?P<h>{_NUMBER})h)?\s*(?:(?P<m>{_NUMBER})m)?\s*"
    rf"(?:(?P<s>{_NUMBER})s)?\s*(?:(?P<ms>{_NUMBER})ms)?"
)
_UNITS: Final = {u: Decimal(n) for u, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1), ("ms", "0.001"))}


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: "45s", "5m", "1h30m", "2d", "250ms", or a number of seconds. ValueError otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            return float(value)
    elif isinstance(value, str) and (text := value.strip()):
        if re.fullmatch(_NUMBER, text):
            return float(text)
        match = _DURATION_RE.fullmatch(text)
        if match and any(match.groups()):
            return float(sum(Decimal(n) * _UNITS[unit] for unit, n in match.groupdict().items() if n))
    raise ValueError(f'expected a duration like "30s", "5m" or "1h30m", got {value!r}')


def format_duration(seconds: float) -> str:
    """``seconds`` written the way ``parse_duration`` reads it, to the millisecond: 5400 → "1h30m"."""
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a non-negative number of seconds, got {seconds!r}")
    rest, parts = round(seconds * 1000), []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def approximate(seconds: float) -> str:
    """A duration to the second for a message, two units at most: 61 → "1m01s", 3725 → "1h02m", 5 → "5s"."""
    minutes, secs = divmod(round(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"

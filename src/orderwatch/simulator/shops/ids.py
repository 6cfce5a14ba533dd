"""Identifiers shaped like each API's: Paddle's ULID-based ids, Stripe's base62 ids, random hex and UUIDs."""

from __future__ import annotations

import random
import string
import uuid
from datetime import datetime
from typing import Final

_CROCKFORD: Final = "0123456789abcdefghjkmnpqrstvwxyz"
_BASE62: Final = string.digits + string.ascii_letters


def ulid(at: datetime, rng: random.Random) -> str:
    """A lower-case ULID: 48 bits of milliseconds then 80 random bits, Crockford base32 (sorts by time)."""
    return _base32((int(at.timestamp() * 1000) << 80) | rng.getrandbits(80))


class MonotonicUlids:
    """ULIDs that keep increasing within one millisecond too (the ULID spec's monotonic mode)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._last = 0

    def next(self, at: datetime) -> str:
        """The next ULID for time ``at``: a fresh one, or the last one plus one when that is not larger."""
        value = (int(at.timestamp() * 1000) << 80) | self._rng.getrandbits(80)
        self._last = value if value > self._last else self._last + 1
        return _base32(self._last)


def _base32(value: int) -> str:
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def base62(rng: random.Random, length: int) -> str:
    """``length`` random characters from ``[0-9A-Za-z]``."""
    return "".join(rng.choice(_BASE62) for _ in range(length))


def hex_token(rng: random.Random, length: int) -> str:
    """``length`` random lower-case hex digits."""
    return f"{rng.getrandbits(4 * length):0{length}x}"


def uuid4(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng``."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))

"""When to try a failed notification again, and when to give up. Pure."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``initial`` seconds before the first retry, doubling up to ``maximum``; give up ``give_up_after`` seconds
    after the notification was queued."""

    initial: float = 30.0
    maximum: float = 3600.0
    give_up_after: float = 86400.0


def backoff(attempts: int, policy: RetryPolicy, rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry number ``attempts`` (1-based): ``initial`` doubling, capped, with ±20 % jitter."""
    base = min(policy.maximum, policy.initial * 2.0 ** max(0, attempts - 1))
    return base * (0.8 + 0.4 * rng())

"""Source health: when a failing source deserves one alert, and when it has recovered. Pure: no I/O, no clock.

A source is *unhealthy* once ``health.failures`` polls in a row failed, or (with ``health.after``) once it has been
failing for that many seconds. The daemon calls ``assess`` after every poll with the source's bookkeeping row; the
``alerted`` flag in that row (kept in the database, so a restart neither repeats nor forgets an alert) makes the
alert go out once per failing streak, and the recovery notice once when the source next succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from orderwatch import clock
from orderwatch.core.durations import approximate

RULE = "health"  # the outbox ``rule`` of health notices


class Streak(Protocol):
    """What health needs of a source's bookkeeping (the store's ``SourceState`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def failures(self) -> int: ...  # failed polls in a row
    @property
    def failing_since(self) -> str | None: ...  # when the current failing streak began
    @property
    def last_error(self) -> str | None: ...
    @property
    def alerted(self) -> bool: ...  # an alert is out for this streak


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a failing source is unhealthy: ``failures`` polls in a row, or (``after``) failing that many seconds."""

    failures: int = 3
    after: float | None = None


@dataclass(frozen=True, slots=True)
class HealthNotice:
    """What to send (and remember) about one source: an ``alert`` or a ``recovery``."""

    kind: Literal["alert", "recovery"]
    source: str
    title: str
    body: str


def failing_for(state: Streak, now: str) -> float:
    """Seconds since the current failing streak of the source began (0 when it is not failing)."""
    if state.failing_since is None or state.failures == 0:
        return 0.0
    return max(0.0, clock.seconds_between(state.failing_since, now))


def unhealthy(state: Streak, health: Thresholds, now: str) -> bool:
    """True when the source's failing streak reached the configured threshold (failures or duration)."""
    if state.failures <= 0:
        return False
    if state.failures >= health.failures:
        return True
    return health.after is not None and failing_for(state, now) >= health.after


def assess(state: Streak, health: Thresholds, *, ok: bool, now: str, auth_failed: bool = False) -> HealthNotice | None:
    """The notice to send after a poll of ``state.name`` (its row as updated by that poll), or None.

    ``ok`` is the poll's outcome; ``auth_failed`` marks a rejected token, which counts as a failure like any other
    but gets a hint on what to fix.
    """
    name = state.name
    if ok:
        if not state.alerted:
            return None
        return HealthNotice(
            "recovery",
            name,
            f'orderwatch: source "{name}" recovered',
            f'Source "{name}" was polled successfully again at {clock.to_second(now)}.',
        )
    if state.alerted or not unhealthy(state, health, now):
        return None
    since = clock.to_second(state.failing_since) or "the last poll"
    lines = [
        f'Source "{name}" failed {state.failures} poll(s) in a row'
        f" (failing for {approximate(failing_for(state, now))}, since {since}).",
        f"Last error: {state.last_error or 'unknown'}",
    ]
    if auth_failed:
        lines.append(f"The token was rejected: fix sources.{name}.token (or its token_file/credential), then reload.")
    lines.append("Changes of its orders are not being detected until it recovers; nothing already seen is lost.")
    return HealthNotice("alert", name, f'orderwatch: source "{name}" is failing', "\n".join(lines))

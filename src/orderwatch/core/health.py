"""Source health: when a failing source deserves one alert, and when it has recovered. Pure: no I/O, no clock.

A source is *unhealthy* once ``health.failures`` polls in a row failed, or (with ``health.after``) once it has been
failing for that many seconds. The daemon calls ``assess`` after every poll with the source's bookkeeping row; the
``alerted`` flag in that row (kept in the database, so a restart neither repeats nor forgets an alert) makes the
alert go out once per failing streak, and the recovery notice once when the source next succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from orderwatch.config import HealthConfig
    from orderwatch.store import SourceState

RULE = "health"  # the outbox ``rule`` of health notices


@dataclass(frozen=True, slots=True)
class HealthNotice:
    """What to send (and remember) about one source: an ``alert`` or a ``recovery``."""

    kind: Literal["alert", "recovery"]
    source: str
    title: str
    body: str


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def failing_for(state: SourceState, now: str) -> float:
    """Seconds since the current failing streak of the source began (0 when it is not failing)."""
    if state.failing_since is None or state.failures == 0:
        return 0.0
    return max(0.0, (_parse(now) - _parse(state.failing_since)).total_seconds())


def unhealthy(state: SourceState, health: HealthConfig, now: str) -> bool:
    """True when the source's failing streak reached the configured threshold (failures or duration)."""
    if state.failures <= 0:
        return False
    if state.failures >= health.failures:
        return True
    return health.after is not None and failing_for(state, now) >= health.after


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def assess(
    state: SourceState, health: HealthConfig, *, ok: bool, now: str, auth_failed: bool = False
) -> HealthNotice | None:
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
            f'Source "{name}" was polled successfully again at {now[:19]}Z.',
        )
    if state.alerted or not unhealthy(state, health, now):
        return None
    since = state.failing_since[:19] + "Z" if state.failing_since else "the last poll"
    lines = [
        f'Source "{name}" failed {state.failures} poll(s) in a row'
        f" (failing for {_duration(failing_for(state, now))}, since {since}).",
        f"Last error: {state.last_error or 'unknown'}",
    ]
    if auth_failed:
        lines.append(f"The token was rejected: fix sources.{name}.token (or its token_file/credential), then reload.")
    lines.append("Changes of its orders are not being detected until it recovers; nothing already seen is lost.")
    return HealthNotice("alert", name, f'orderwatch: source "{name}" is failing', "\n".join(lines))

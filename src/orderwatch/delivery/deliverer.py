"""The delivery step: claim due outbox rows, render them, send them through ``notify``, and record the outcome.

Sent → ``sent``. A temporary failure → retried with exponential backoff and jitter (``delivery.retry_initial``
doubling up to ``delivery.retry_max``) until ``delivery.give_up_after`` has passed since the row was queued, then
``failed``. A permanent failure (a URL that cannot work) → ``failed`` at once with the reason. URLs of a channel that
already got a message are remembered per row, so a retry never sends twice to the same URL. A duplicate is possible
only if the process dies between a send and its mark.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio.to_thread
import structlog

from orderwatch.core import render
from orderwatch.delivery import notify
from orderwatch.sweep.poller import utcnow

if TYPE_CHECKING:
    from orderwatch.config import Config
    from orderwatch.store import OutboxRow, Store

log = structlog.get_logger("orderwatch.delivery.deliverer")
LEASE = timedelta(minutes=5)


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _fmt(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one delivery step did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0


def backoff(attempts: int, initial: float, maximum: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry number ``attempts`` (1-based): ``initial`` doubling, capped, with ±20 % jitter."""
    base = min(maximum, initial * 2.0 ** max(0, attempts - 1))
    return base * (0.8 + 0.4 * rng())


class Deliverer:
    """Delivers the outbox of one store with the channels and rules of one config."""

    def __init__(self, store: Store, conf: Config, *, now: Callable[[], str] = utcnow) -> None:
        self.store = store
        self.conf = conf
        self.now = now

    async def deliver_due(self, limit: int = 100) -> DeliveryReport:
        """Deliver every due row (at most ``limit``); never raises for a failing channel."""
        now = self.now()
        lease = _fmt(_parse(now) + LEASE)
        rows = await anyio.to_thread.run_sync(lambda: self.store.claim_due(now=now, lease_until=lease, limit=limit))
        sent = retrying = failed = 0
        for row in rows:
            outcome = await self._deliver(row)
            sent += outcome == "sent"
            retrying += outcome == "retrying"
            failed += outcome == "failed"
        return DeliveryReport(sent, retrying, failed)

    def _notice(self, row: OutboxRow) -> render.Notice | None:
        if row.title is not None:
            return render.Notice(row.title, row.body or "", None)
        events = self.store.events_by_id(row.event_ids)
        if not events:
            return None
        if row.digest:
            return render.render_digest(events)
        rule = next((r for r in self.conf.rules if r.name == row.rule), None)
        notice = render.render_event(events[0], title=rule.title if rule else None, body=rule.body if rule else None)
        if notice.fallback:
            log.warning("template failed; default used", rule=row.rule, outbox_id=row.id, reason=notice.fallback)
        return notice

    async def _deliver(self, row: OutboxRow) -> str:
        channel = self.conf.channels.get(row.channel)
        if channel is None:
            return await self._give_up(row, f'channel "{row.channel}" is no longer configured', row.done_urls)
        notice = await anyio.to_thread.run_sync(self._notice, row)
        if notice is None:
            return await self._give_up(row, "its events are no longer in the database", row.done_urls)
        urls = [u.get_secret_value() for u in channel.urls]
        results = await notify.send(urls, notice, skip=row.done_urls)
        done = set(row.done_urls) | {r.index for r in results if r.ok}
        failures = [r for r in results if not r.ok]
        if not failures:
            await anyio.to_thread.run_sync(lambda: self.store.mark_sent(row.id, now=self.now()))
            log.info("delivered", outbox_id=row.id, channel=row.channel, events=len(row.event_ids))
            return "sent"
        reason = "; ".join(f"{notify.mask_url(urls[r.index])}: {r.reason}" for r in failures)
        if all(r.permanent for r in failures):
            return await self._give_up(row, f"permanent failure: {reason}", done)
        conf = self.conf.delivery
        now = _parse(self.now())
        if now - _parse(row.created_at) >= timedelta(seconds=conf.give_up_after):
            return await self._give_up(row, f"gave up after {row.attempts + 1} attempts: {reason}", done)
        delay = backoff(row.attempts + 1, conf.retry_initial, conf.retry_max)
        next_at = _fmt(now + timedelta(seconds=delay))
        await anyio.to_thread.run_sync(
            lambda: self.store.mark_retry(row.id, next_at=next_at, error=reason, done_urls=sorted(done))
        )
        log.warning(
            "delivery failed; will retry", outbox_id=row.id, channel=row.channel, retry_at=next_at, reason=reason
        )
        return "retrying"

    async def _give_up(self, row: OutboxRow, reason: str, done: Collection[int]) -> str:
        await anyio.to_thread.run_sync(lambda: self.store.mark_failed(row.id, error=reason, done_urls=sorted(done)))
        log.error("delivery failed for good", outbox_id=row.id, channel=row.channel, reason=reason)
        return "failed"

"""The delivery step: claim due outbox rows, render them, send them through ``notify``, and record the outcome.

Sent → ``sent``. A temporary failure → retried with exponential backoff and jitter (``delivery.retry_initial``
doubling up to ``delivery.retry_max``) until ``delivery.give_up_after`` has passed since the row was queued, then
``failed``. A permanent failure (a URL that cannot work) → ``failed`` at once with the reason. URLs of a channel that
already got a message are remembered per row, so a retry never sends twice to the same URL. A duplicate is possible
only if the process dies between a send and its mark.

Configured secrets are masked (``config.secrets.redact``) in every notice before it is sent and in every reason
before it is stored or logged.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import structlog

from orderwatch import clock
from orderwatch.config.secrets import redact
from orderwatch.core import render
from orderwatch.core.backoff import RetryPolicy, backoff
from orderwatch.core.model import Event
from orderwatch.core.rules import Channel, Rule
from orderwatch.delivery import notify
from orderwatch.sources import Source, adapter_for

if TYPE_CHECKING:
    from orderwatch.store import OutboxRow, Store

log = structlog.get_logger("orderwatch.delivery.deliverer")
LEASE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one delivery step did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0


def details_for(sources: Mapping[str, Source]) -> Callable[[Event, Any], render.Details]:
    """The format's own lines of an order (amount, product, payment), asked of the adapter of its source; none for
    a source no longer configured."""

    def details(event: Event, order: Any) -> render.Details:
        src = sources.get(event.source)
        return adapter_for(src).display(order) if src is not None else ()

    return details


class Deliverer:
    """Delivers the outbox of one store through these channels, with these rules' templates and this back-off."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        rules: Sequence[Rule] = (),
        retry: RetryPolicy | None = None,
        *,
        sources: Mapping[str, Source] | None = None,
        now: Callable[[], str] = clock.now_text,
    ) -> None:
        self.store = store
        self.channels = channels
        self.rules = {rule.name: rule for rule in rules}
        self.retry = retry or RetryPolicy()
        self.details = details_for(sources or {})
        self.now = now

    async def deliver_due(self, limit: int = 100) -> DeliveryReport:
        """Deliver every due row (at most ``limit``); never raises for a failing channel."""
        now = self.now()
        lease = clock.text(clock.parse(now) + LEASE)
        rows = await anyio.to_thread.run_sync(lambda: self.store.claim_due(now=now, lease_until=lease, limit=limit))
        sent = retrying = failed = 0
        for row in rows:
            outcome = await self._deliver(row)
            sent += outcome == "sent"
            retrying += outcome == "retrying"
            failed += outcome == "failed"
        return DeliveryReport(sent, retrying, failed)

    def _notice(self, row: OutboxRow) -> render.Notice | None:
        notice = self._rendered(row)
        if notice is None:
            return None
        return render.Notice(redact(notice.title), redact(notice.body), notice.fallback)

    def _rendered(self, row: OutboxRow) -> render.Notice | None:
        if row.title is not None:
            return render.stored_notice(row.title, row.body or "")
        events = self.store.events_by_id(row.event_ids)
        if not events:
            return None
        if row.digest:
            return render.render_digest(events)
        rule = self.rules.get(row.rule)
        event = events[0]
        notice = render.render_event(
            event,
            title=rule.title if rule else None,
            body=rule.body if rule else None,
            details=self.details(event, render.order_of(event)),
        )
        if notice.fallback:
            log.warning("template failed; default used", rule=row.rule, outbox_id=row.id, reason=notice.fallback)
        return notice

    async def _deliver(self, row: OutboxRow) -> str:
        channel = self.channels.get(row.channel)
        if channel is None:
            return await self._give_up(row, f'channel "{row.channel}" is no longer configured', row.done_urls)
        notice = await anyio.to_thread.run_sync(self._notice, row)
        if notice is None:
            return await self._give_up(row, "its events are no longer in the database", row.done_urls)
        urls = [u.reveal() for u in channel.urls]
        results = await notify.send(urls, notice, skip=row.done_urls)
        done = set(row.done_urls) | {r.index for r in results if r.ok}
        failures = [r for r in results if not r.ok]
        if not failures:
            await anyio.to_thread.run_sync(lambda: self.store.mark_sent(row.id, now=self.now()))
            log.info("delivered", outbox_id=row.id, channel=row.channel, events=len(row.event_ids))
            return "sent"
        reason = redact("; ".join(f"{notify.mask_url(urls[r.index])}: {r.reason}" for r in failures))
        if all(r.permanent for r in failures):
            return await self._give_up(row, f"permanent failure: {reason}", done)
        now = clock.parse(self.now())
        if clock.seconds_between(row.created_at, now) >= self.retry.give_up_after:
            return await self._give_up(row, f"gave up after {row.attempts + 1} attempts: {reason}", done)
        delay = backoff(row.attempts + 1, self.retry)
        next_at = clock.text(now + timedelta(seconds=delay))
        await anyio.to_thread.run_sync(
            lambda: self.store.mark_retry(row.id, next_at=next_at, error=reason, done_urls=sorted(done))
        )
        log.warning(
            "delivery failed; will retry", outbox_id=row.id, channel=row.channel, retry_at=next_at, reason=reason
        )
        return "retrying"

    async def _give_up(self, row: OutboxRow, reason: str, done: Collection[int]) -> str:
        reason = redact(reason)
        await anyio.to_thread.run_sync(lambda: self.store.mark_failed(row.id, error=reason, done_urls=sorted(done)))
        log.error("delivery failed for good", outbox_id=row.id, channel=row.channel, reason=reason)
        return "failed"

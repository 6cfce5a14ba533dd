"""The delivery step: claim due outbox rows, render them, send them through ``notify``, and record the outcome.

Sent → ``sent``. A temporary failure → retried with exponential backoff and jitter (``delivery.retry_initial``
doubling up to ``delivery.retry_max``) until ``delivery.give_up_after`` has passed since the row was queued, then
``failed``. A permanent failure (a URL that cannot work) → ``failed`` at once with the reason. URLs of a channel that
already got a message are remembered per row, so a retry never sends twice to the same URL; so are URLs that were
maybe sent (no answer in time after the request went out: see ``notify``), which the log and the row's error say. A
duplicate is possible only if the process dies between a send and its mark.

Before sending, the notification policies (``policy``: silences, quiet hours) sift the claimed rows; rows that
waited out a channel's quiet hours together go out as one digest, and its outcome is recorded for each of them.

Configured secrets are masked (``config.secrets.redact``) in every notice before it is sent and in every reason
before it is stored or logged.

A rule's templates are rendered in a daemon thread of their own. The render stops itself at its time limit
(``core.sandbox.RENDER_SECONDS``) and falls back to the default text; should it not, the delivery step stops waiting
after ``RENDER_BACKSTOP`` seconds, sends the default text and leaves the thread behind (a daemon thread cannot hold
up the process's exit). Either way the fallback is logged, and no other notification waits longer than that.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio.to_thread
import structlog

from orderwatch import clock
from orderwatch.config.secrets import redact
from orderwatch.core import render
from orderwatch.core.backoff import RetryPolicy, backoff
from orderwatch.core.model import Event
from orderwatch.core.rules import Channel, Rule
from orderwatch.core.sandbox import RENDER_SECONDS
from orderwatch.delivery import notify, policy
from orderwatch.sources import Source, adapter_for

if TYPE_CHECKING:
    from orderwatch.store import OutboxRow, Store

log = structlog.get_logger("orderwatch.delivery.deliverer")
LEASE = timedelta(minutes=5)
DIGEST_CLAIM_MAX: Final = 10_000  # rows claimed in one step to gather what waited out quiet hours into one digest
RENDER_BACKSTOP: Final = RENDER_SECONDS + 2.0  # the render's own limit, plus slack for a loaded machine
T = TypeVar("T")


async def _in_own_thread(work: Callable[[], T], limit: float) -> T | None:
    """``work()`` run in a daemon thread of its own: its result, or None when it has not finished within ``limit``
    seconds (the thread is then left to finish alone). An exception ``work`` raised is raised here."""
    done = threading.Event()
    results: list[T] = []
    errors: list[Exception] = []

    def target() -> None:
        try:
            results.append(work())
        except Exception as exc:  # handed to the caller, not to the thread's excepthook
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, name="orderwatch-render", daemon=True).start()
    finished = await anyio.to_thread.run_sync(done.wait, limit, abandon_on_cancel=True)
    if errors:
        raise errors[0]
    return results[0] if finished and results else None


def _each(ids: Sequence[int], mark: Callable[[int], None]) -> None:
    """``mark`` every row of ``ids`` (the rows one message went out for)."""
    for row_id in ids:
        mark(row_id)


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
        url_timeout: float = notify.DEFAULT_TIMEOUT,
    ) -> None:
        self.store = store
        self.url_timeout = url_timeout
        self.channels = channels
        self.rules = {rule.name: rule for rule in rules}
        self.retry = retry or RetryPolicy()
        self.details = details_for(sources or {})
        self.now = now

    async def deliver_due(self, limit: int = 100) -> DeliveryReport:
        """Deliver the due rows, ``limit`` at a time: one claim, or as many as gather every row that waited out a
        channel's quiet hours into its one digest (up to ``DIGEST_CLAIM_MAX``); never raises for a failing channel."""
        now = self.now()
        lease = clock.text(clock.parse(now) + LEASE)
        rows: list[OutboxRow] = []
        groups: dict[str, list[OutboxRow]] = {}
        claimed = 0
        while True:
            batch = await anyio.to_thread.run_sync(
                lambda: self.store.claim_due(now=now, lease_until=lease, limit=limit)
            )
            claimed += len(batch)
            sifted = await anyio.to_thread.run_sync(
                functools.partial(policy.sift, self.store, batch, clock.parse(now), self.channels, self.rules)
            )
            rows += sifted.rows
            for group in sifted.groups:
                groups.setdefault(group[0].channel, []).extend(group)
            # a full claim that released rows from quiet hours may have left more of them: one digest takes them all
            if len(batch) < limit or not groups or claimed >= DIGEST_CLAIM_MAX:
                break
        outcomes = [await self._deliver_group(group) for group in groups.values() if len(group) > 1]
        singles = sorted([*rows, *(group[0] for group in groups.values() if len(group) == 1)], key=lambda r: r.id)
        outcomes += [await self._deliver(row) for row in singles]
        return DeliveryReport(outcomes.count("sent"), outcomes.count("retrying"), outcomes.count("failed"))

    async def _deliver_group(self, group: Sequence[OutboxRow]) -> str:
        """Rows of one channel that waited out its quiet hours, sent as one digest of all their events."""
        ids = [i for row in group for i in row.event_ids]
        events = await anyio.to_thread.run_sync(self.store.events_by_id, ids)
        first, rest = group[0], group[1:]
        if not events:
            return await self._give_up(first, "its events are no longer in the database", first.done_urls, rest)
        digest = await anyio.to_thread.run_sync(render.render_digest, events)
        count = len(events)
        title = f"[orderwatch] {count} order change{'' if count == 1 else 's'} during quiet hours"
        notice = render.Notice(redact(title), redact(digest.body))
        log.info("quiet hours over: one digest", channel=first.channel, rows=len(group), events=count)
        return await self._deliver(first, notice=notice, also=rest)

    async def _notice(self, row: OutboxRow) -> render.Notice | None:
        """The notice of ``row``, secrets masked; None when its events are gone."""
        notice = await self._rendered(row)
        if notice is None:
            return None
        return render.Notice(redact(notice.title), redact(notice.body), notice.fallback)

    async def _rendered(self, row: OutboxRow) -> render.Notice | None:
        if row.title is not None:
            return render.stored_notice(row.title, row.body or "")
        events = await anyio.to_thread.run_sync(self.store.events_by_id, row.event_ids)
        if not events:
            return None
        if row.digest:
            return await anyio.to_thread.run_sync(render.render_digest, events)
        rule = self.rules.get(row.rule)
        event = events[0]
        title, body = (rule.title, rule.body) if rule is not None else (None, None)

        def rendered(title: str | None = title, body: str | None = body) -> render.Notice:
            details = self.details(event, render.order_of(event))
            return render.render_event(event, title=title, body=body, details=details)

        if title is None and body is None:
            return await anyio.to_thread.run_sync(rendered)
        notice = await _in_own_thread(rendered, RENDER_BACKSTOP)
        if notice is None:
            reason = f"templates still rendering after {RENDER_BACKSTOP:g} s (left to stop on their own)"
            notice = dataclasses.replace(await anyio.to_thread.run_sync(rendered, None, None), fallback=reason)
        if notice.fallback:
            log.warning("template failed; default used", rule=row.rule, outbox_id=row.id, reason=notice.fallback)
        return notice

    async def _deliver(
        self, row: OutboxRow, *, notice: render.Notice | None = None, also: Sequence[OutboxRow] = ()
    ) -> str:
        """Send ``row`` (its own ``notice`` when given) and record the outcome, for the rows ``also`` too (a digest
        of several rows is one message)."""
        channel = self.channels.get(row.channel)
        if channel is None:
            return await self._give_up(row, f'channel "{row.channel}" is no longer configured', row.done_urls, also)
        notice = notice or await self._notice(row)
        if notice is None:
            return await self._give_up(row, "its events are no longer in the database", row.done_urls, also)
        every = [row.id, *(r.id for r in also)]
        urls = [u.reveal() for u in channel.urls]
        results = await notify.send(urls, notice, skip=row.done_urls, url_timeout=self.url_timeout)
        done = set(row.done_urls) | {r.index for r in results if r.ok or r.maybe}
        failures = [r for r in results if not (r.ok or r.maybe)]
        maybe = redact("; ".join(f"{notify.mask_url(urls[r.index])}: {r.reason}" for r in results if r.maybe))
        if maybe:
            log.warning("maybe delivered: no answer in time; not sent again", outbox_id=row.id, reason=maybe)
        if not failures:
            sent_at = self.now()
            await anyio.to_thread.run_sync(_each, every, lambda i: self.store.mark_sent(i, now=sent_at))
            log.info("delivered", outbox_id=row.id, channel=row.channel, events=len(row.event_ids), maybe=bool(maybe))
            return "sent"
        reason = redact("; ".join(f"{notify.mask_url(urls[r.index])}: {r.reason}" for r in failures))
        if maybe:
            reason += f"; maybe sent, not sent again: {maybe}"
        if all(r.permanent for r in failures):
            return await self._give_up(row, f"permanent failure: {reason}", done, also)
        now = clock.parse(self.now())
        if clock.seconds_between(row.created_at, now) >= self.retry.give_up_after:
            return await self._give_up(row, f"gave up after {row.attempts + 1} attempts: {reason}", done, also)
        delay = backoff(row.attempts + 1, self.retry)
        next_at = clock.text(now + timedelta(seconds=delay))
        await anyio.to_thread.run_sync(
            _each, every, lambda i: self.store.mark_retry(i, next_at=next_at, error=reason, done_urls=sorted(done))
        )
        log.warning(
            "delivery failed; will retry", outbox_id=row.id, channel=row.channel, retry_at=next_at, reason=reason
        )
        return "retrying"

    async def _give_up(self, row: OutboxRow, reason: str, done: Collection[int], also: Sequence[OutboxRow] = ()) -> str:
        reason = redact(reason)
        every = [row.id, *(r.id for r in also)]
        await anyio.to_thread.run_sync(
            _each, every, lambda i: self.store.mark_failed(i, error=reason, done_urls=sorted(done))
        )
        log.error("delivery failed for good", outbox_id=row.id, channel=row.channel, reason=reason)
        return "failed"

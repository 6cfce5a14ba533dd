"""One poll of a source, end to end: sweep → confirm absences → diff → route → one store transaction.

Shared by ``orderwatch poll`` and the daemon. Store calls run in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import httpx
import structlog

from orderwatch import clock
from orderwatch.core.diff import diff
from orderwatch.core.model import Change, Event, Known, Observation, Order, is_canonical
from orderwatch.core.rules import Router, no_routes
from orderwatch.errors import AuthError, SourceError, StoreError
from orderwatch.sources import Source
from orderwatch.sweep import fetch, incremental
from orderwatch.sweep.full import SnapshotSink

if TYPE_CHECKING:
    from orderwatch.store import SourceState, Store

log = structlog.get_logger("orderwatch.sweep.poller")

# A complete full sweep whose totals do not add up is not proof of absence, so it is not taken as the baseline —
# unless this many complete sweeps in a row did not add up (an API whose count is simply wrong must still get one;
# the silent sweeps before it have stored what they saw).
BASELINE_TRIES = 3

# Orders missing from a consistent sweep are re-checked on the detail endpoint when there are at most this many;
# a sighting there means the sweep skipped rows, so nothing is reported vanished this time.
DETAIL_CHECK_MAX = 20


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll of one source did."""

    source: str
    events: tuple[Event, ...] = ()
    error: str | None = None  # why the poll failed or stopped early (None: a clean, complete poll)
    auth_failed: bool = False
    baseline: bool = False
    orders: int = 0
    requests: int = 0
    bytes: int = 0
    duration: float = 0.0
    complete: bool = False
    consistent: bool = False

    @property
    def ok(self) -> bool:
        """True when the poll completed without error."""
        return self.error is None


class Poller:
    """Polls sources into one store through one set of HTTP clients."""

    def __init__(
        self,
        store: Store,
        clients: fetch.Clients,
        *,
        router: Router = no_routes,
        now: Callable[[], str] = clock.now_text,
    ) -> None:
        self.store = store
        self.clients = clients
        self.router = router
        self.now = now
        self._warned_states: set[tuple[str, str]] = set()
        self._full_next: set[str] = set()  # sources whose next poll must be a full sweep

    async def poll_many(
        self, chosen: Sequence[Source], *, dry_run: bool = False, full: bool | None = None
    ) -> list[PollResult]:
        """Poll several sources concurrently; one failing source never stops the others."""
        results: dict[str, PollResult] = {}

        async def one(src: Source) -> None:
            results[src.name] = await self.poll(src, dry_run=dry_run, full=full)

        async with anyio.create_task_group() as tg:
            for src in chosen:
                tg.start_soon(one, src)
        return [results[s.name] for s in chosen]

    def _wants_full(self, src: Source, state: SourceState | None, full: bool | None) -> bool:
        """Full sweep or incremental poll: full until a baseline, when asked, when due, or when told so."""
        if full is not None:
            return full
        if state is None or state.baseline_at is None or state.last_full_at is None:
            return True
        if not incremental.supports_incremental(src) or src.name in self._full_next:
            return True
        return clock.seconds_between(state.last_full_at, clock.now()) >= src.full_sweep

    async def poll(self, src: Source, *, dry_run: bool = False, full: bool | None = None) -> PollResult:
        """Poll ``src`` once (``full``: force a full sweep or an incremental poll; None: decide).

        Never raises for source trouble: the result says what went wrong.
        """
        started = time.monotonic()
        client = self.clients.for_source(src)
        now = self.now()
        state: SourceState | None = None
        try:
            state = await anyio.to_thread.run_sync(self.store.source_state, src.name)
            baselined = state is not None and state.baseline_at is not None
            if self._wants_full(src, state, full):
                observation, change = await self._full(client, src, baselined=baselined, now=now, dry_run=dry_run)
                self._full_next.discard(src.name)
                tries = state.baseline_tries if state is not None else 0
                if not baselined and observation.complete and not change.baseline and tries + 1 >= BASELINE_TRIES:
                    change = replace(change, baseline=True)
                    log.warning(
                        "baseline taken although the sweep's totals do not add up",
                        source=src.name,
                        sweeps=tries + 1,
                        reason=observation.reason,
                    )
            else:
                observation, change = await self._incremental(client, src, baselined=baselined, now=now)
        except SourceError as exc:
            return await self._failed(src, exc, started, dry_run, state)
        except StoreError as exc:
            log.error("store unavailable: nothing recorded, will retry next poll", source=src.name, error=str(exc))
            return PollResult(src.name, error=str(exc), duration=time.monotonic() - started)
        self._warn_unknown_states(src, ((o.raw_state, o.state) for o in change.upserts))

        error = None if observation.complete else observation.reason
        duration = time.monotonic() - started
        if dry_run:
            events = change.events
        else:
            deliveries = self.router(change.events)
            try:
                stored = await anyio.to_thread.run_sync(
                    lambda: self.store.record(
                        src.name,
                        change,
                        deliveries,
                        now=now,
                        full=observation.full,
                        requests=observation.requests,
                        duration=duration,
                        error=error,
                    )
                )
            except StoreError as exc:
                log.error(
                    "store unavailable: events not recorded, will retry next poll", source=src.name, error=str(exc)
                )
                return PollResult(src.name, error=str(exc), duration=duration)
            events = tuple(stored)
        seen = observation.distinct if observation.distinct is not None else len(observation.orders)
        result = PollResult(
            source=src.name,
            events=tuple(events),
            error=error,
            baseline=change.baseline,
            orders=seen,
            requests=observation.requests,
            bytes=observation.bytes,
            duration=duration,
            complete=observation.complete,
            consistent=observation.consistent,
        )
        if result.ok and state is not None and state.failures:
            log.info("source recovered", source=src.name, after_failures=state.failures)
        (log.info if result.ok else log.warning)(
            "polled" if result.ok else "polled partially",
            source=src.name,
            mode="full" if observation.full else "incremental",
            orders=result.orders,
            events=len(result.events),
            requests=result.requests,
            bytes=result.bytes,
            duration=round(duration, 3),
            complete=observation.complete,
            consistent=observation.consistent,
            baseline=change.baseline or None,
            reason=observation.reason,
        )
        return result

    async def _full(
        self, client: httpx.AsyncClient, src: Source, *, baselined: bool, now: str, dry_run: bool
    ) -> tuple[Observation, Change]:
        """A full sweep, diffed page by page against the store as it streams in."""
        sink = SnapshotSink(self.store, src.name, baselined=baselined, now=now, write=not dry_run)
        await anyio.to_thread.run_sync(sink.begin)
        try:
            observation = await fetch.stream(client, src, sink)
            self._warn_unknown_states(src, sink.seen_states)
            missing: dict[str, Known] = {}
            if observation.proves_absence:
                missing = await anyio.to_thread.run_sync(sink.unseen)
            if baselined and missing:
                found = await self._confirm_absent(src, missing)
                if found:
                    await sink(tuple(found.values()))
                    missing = {}
                    observation = replace(
                        observation, consistent=False, reason="the detail endpoint still has orders the sweep missed"
                    )
        finally:
            await anyio.to_thread.run_sync(sink.end)
        change = await anyio.to_thread.run_sync(lambda: sink.finish(missing, proves_absence=observation.proves_absence))
        return observation, change

    async def _incremental(
        self, client: httpx.AsyncClient, src: Source, *, baselined: bool, now: str
    ) -> tuple[Observation, Change]:
        """An incremental poll (see ``orderwatch.sweep.incremental``), diffed against the rows it touched."""
        name = src.name
        open_known = await anyio.to_thread.run_sync(lambda: self.store.known_in_states(name, list(src.open_states)))
        inc = await incremental.observe(
            client,
            src,
            open_known,
            is_known=lambda keys: self.store.known(name, keys).keys(),
            created_at=lambda keys: self.store.created_at(name, keys),
        )
        if inc.needs_full:
            self._full_next.add(name)
        observation = inc.observation
        previous = await anyio.to_thread.run_sync(lambda: self.store.known(name, list(observation.orders)))
        return observation, diff(previous, observation, baselined=baselined, now=now)

    async def _failed(
        self, src: Source, exc: SourceError, started: float, dry_run: bool, state: SourceState | None
    ) -> PollResult:
        duration = time.monotonic() - started
        # logged when a failure starts or changes; the same failure again is only a debug line (no log storm)
        again = state is not None and state.failures > 0 and state.last_error == str(exc)
        (log.debug if again else log.warning)(
            "poll failed",
            source=src.name,
            error=exc.message,
            retryable=exc.retryable,
            failures=(state.failures + 1) if state is not None else 1,
        )
        if not dry_run:
            try:
                await anyio.to_thread.run_sync(lambda: self.store.record_failure(src.name, str(exc), now=self.now()))
            except StoreError as store_exc:
                log.error("store unavailable", source=src.name, error=str(store_exc))
        return PollResult(src.name, error=str(exc), auth_failed=isinstance(exc, AuthError), duration=duration)

    async def _confirm_absent(self, src: Source, missing: Mapping[str, Known]) -> dict[str, Order]:
        """Re-read orders a consistent sweep did not see; returns those the detail endpoint still has.

        Any sighting means the sweep skipped rows, so nothing is reported vanished this poll.
        """
        if len(missing) > DETAIL_CHECK_MAX:
            return {}
        http = self.clients.for_source(src)
        found: dict[str, Order] = {}
        for key in missing:
            try:
                order = await fetch.fetch_detail(http, src, key)
            except SourceError:
                continue  # the sweep was complete and consistent; a failing re-check proves nothing either way
            if order is not None and order.key == key:
                found[key] = order
        if found:
            log.info("sweep skipped rows; no order reported vanished this poll", source=src.name, skipped=len(found))
        return found

    def _warn_unknown_states(self, src: Source, states: Iterable[tuple[str, str]]) -> None:
        """Log each (raw, canonical) state that is not canonical, once per source."""
        for raw, state in states:
            if not is_canonical(state) and (src.name, raw) not in self._warned_states:
                self._warned_states.add((src.name, raw))
                log.warning("unknown state kept as is; map it with sources.NAME.states", source=src.name, state=raw)

"""One poll of a source, end to end: choose the plan → reconcile (incremental) or sweep (full) → diff → route →
one store transaction.

- **Which plan.** A full sweep until the source has a baseline, when ``full_sweep`` is due, when asked, when the last
  poll could not settle something (persisted with the source, so a new ``orderwatch poll`` process settles it first),
  or when it costs no more requests than an incremental poll would. Otherwise an incremental poll (``plan.py``),
  which proves the snapshot matches the server's own counts or finds what differs — and says "sweep now" when it
  cannot (then the full sweep runs in the same poll).
- **What the server proved** (capabilities: its state filter, sort, counts, parts, detail endpoint) is learned from
  every answer, stored with the source, and logged once when it changes.
- **A budget.** A poll that runs past ``poll_budget(src)`` is cut and recorded as a failure of the source.

Shared by ``orderwatch poll`` and the daemon. Store calls run in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, Literal

import anyio
import anyio.to_thread
import httpx
import structlog

from orderwatch import clock
from orderwatch.config.secrets import redact
from orderwatch.core.diff import diff
from orderwatch.core.model import Change, Event, Known, Observation, Order, is_canonical
from orderwatch.core.rules import Router, no_routes
from orderwatch.errors import AuthError, LimitExceeded, SourceError, StoreError
from orderwatch.sources import Part, Source, adapter_for
from orderwatch.sweep import local, paging, plan
from orderwatch.sweep.full import FullSweep
from orderwatch.sweep.http import Clients, Tally, fetch_detail, fetch_page
from orderwatch.sweep.reconcile import Executor

if TYPE_CHECKING:
    from orderwatch.store import SourceState, Store

log = structlog.get_logger("orderwatch.sweep.poller")

# A complete full sweep whose totals do not add up is not proof of absence, so it is not taken as the baseline —
# unless this many complete sweeps in a row did not add up (an API whose count is simply wrong must still get one;
# the silent sweeps before it have stored what they saw).
BASELINE_TRIES: Final = 3

# Orders missing from a consistent sweep are re-checked on the detail endpoint when there are at most this many;
# a sighting there means the sweep skipped rows, so nothing is reported vanished this time.
DETAIL_CHECK_MAX: Final = 20
UNKNOWN_STATES_LOGGED: Final = 20  # distinct unknown raw states logged per source (then one line says so)
RECHECK_SECONDS: Final = 30.0  # at most this long (and within retry_budget) for one re-check of missing orders


def poll_budget(src: Source) -> float:
    """Seconds one poll of ``src`` may take: a full sweep of ``max_pages`` requests, each within its ``timeout``,
    plus the ``retry_budget``."""
    return src.retry_budget + src.max_pages * src.timeout


def recheck_deadline(src: Source) -> float:
    """The monotonic deadline of one re-check of orders a sweep missed (detail, search by key, proof of gone)."""
    return time.monotonic() + min(src.retry_budget, RECHECK_SECONDS)


class Outcome(enum.Enum):
    """How a poll went."""

    OK = "ok"  # complete: every change found
    PARTIAL = "partial"  # something was seen and recorded, something could not be settled
    FAILED = "failed"  # nothing could be polled
    AUTH_FAILED = "auth_failed"  # the source rejected the token


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll of one source did."""

    source: str
    events: tuple[Event, ...] = ()
    error: str | None = None  # why the poll failed or could not settle everything (None: a clean, complete poll)
    outcome: Outcome = Outcome.OK
    baseline: bool = False
    orders: int = 0
    requests: int = 0
    bytes: int = 0
    duration: float = 0.0
    complete: bool = False
    consistent: bool = False
    mode: Literal["full", "incremental"] = "full"

    def __post_init__(self) -> None:
        if (self.error is None) != (self.outcome is Outcome.OK):
            must = "must" if self.error is None else "must not"
            raise ValueError(f"a poll with outcome {self.outcome.value} {must} carry an error")

    @property
    def ok(self) -> bool:
        """True when the poll completed without error."""
        return self.error is None

    @property
    def auth_failed(self) -> bool:
        """True when the source rejected the token."""
        return self.outcome is Outcome.AUTH_FAILED


class Poller:
    """Polls sources into one store through one set of HTTP clients."""

    def __init__(
        self,
        store: Store,
        clients: Clients,
        *,
        router: Router = no_routes,
        now: Callable[[], str] = clock.now_text,
    ) -> None:
        self.store = store
        self.clients = clients
        self.router = router
        self.now = now
        self._warned_states: dict[str, set[str]] = {}

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

    def _full_because(self, src: Source, state: SourceState | None, full: bool | None) -> str | None:
        """Why this poll must be a full sweep (None: an incremental poll may be tried)."""
        if full is not None:
            return "asked for" if full else None
        if state is None or state.baseline_at is None or state.last_full_at is None:
            return "no baseline yet"
        if not src.incremental:
            return "incremental polls are off (sources.NAME.incremental)"
        if adapter_for(src).filters_state(src.params):
            return "the source's own params filter by state"
        if state.full_due is not None:
            return f"the last poll could not settle: {state.full_due}"
        if clock.seconds_between(state.last_full_at, clock.now()) >= src.full_sweep:
            return "full_sweep is due"
        return None

    async def poll(self, src: Source, *, dry_run: bool = False, full: bool | None = None) -> PollResult:
        """Poll ``src`` once (``full``: force a full sweep or an incremental poll; None: decide).

        Never raises for source trouble: the result says what went wrong.
        """
        started = time.monotonic()
        now = self.now()
        state: SourceState | None = None
        try:
            state = await anyio.to_thread.run_sync(self.store.source_state, src.name)
            with anyio.fail_after(poll_budget(src)):
                observation, change = await self._sweep(src, state, full=full, now=now, dry_run=dry_run)
        except TimeoutError:
            exc = LimitExceeded(
                src.name,
                f"the poll ran past its budget of {poll_budget(src):g} s (max_pages x timeout + retry_budget)",
            )
            return await self._failed(src, exc, started, dry_run, state)
        except SourceError as exc:
            return await self._failed(src, exc, started, dry_run, state)
        except StoreError as exc:
            log.error("store unavailable: nothing recorded, will retry next poll", source=src.name, error=str(exc))
            return PollResult(src.name, error=str(exc), outcome=Outcome.FAILED, duration=time.monotonic() - started)
        return await self._record(src, state, observation, change, started=started, now=now, dry_run=dry_run)

    async def _sweep(
        self, src: Source, state: SourceState | None, *, full: bool | None, now: str, dry_run: bool
    ) -> tuple[Observation, Change]:
        """The observation of this poll and the change it makes: an incremental poll when it can settle the
        source, else a full sweep."""
        client = self.clients.for_source(src)
        baselined = state is not None and state.baseline_at is not None
        because = self._full_because(src, state, full)
        tally = Tally()  # one count for the poll, when an incremental poll turns into a full sweep too
        if because is None:
            caps = await anyio.to_thread.run_sync(local.capabilities, self.store, src)
            known = await anyio.to_thread.run_sync(local.knowledge, self.store, src, caps)
            because = plan.worth_trying(known)
            if because is None:
                answer = local.answerer(self.store, src)
                verdict = await Executor(client, src, answer, tally).run(plan.incremental(known))
                await self._learn(src, verdict.learned, dry_run=dry_run)
                if verdict.full_now is None:
                    return await self._settled(src, verdict, tally, baselined=baselined, now=now)
                because = verdict.full_now
                log.info("full sweep instead of an incremental poll", source=src.name, reason=because)
        caps = await anyio.to_thread.run_sync(local.capabilities, self.store, src)
        trust = caps.get("counts") is not False
        observation, change = await self._full(
            client, src, tally, baselined=baselined, now=now, dry_run=dry_run, trust_counts=trust
        )
        learned: dict[plan.Capability, tuple[bool, str]] = {}
        if observation.counts_ok is not None and observation.complete:
            learned["counts"] = (observation.counts_ok, observation.reason or "the counts matched the full sweep")
        if observation.sorted_ok is not None:
            learned["sort"] = (
                observation.sorted_ok,
                "the full sweep's pages " + ("were" if observation.sorted_ok else "were not") + " newest first",
            )
        await self._learn(src, learned, dry_run=dry_run)
        tries = state.baseline_tries if state is not None else 0
        ended = observation.end_reached or tries + 1 >= BASELINE_TRIES
        if not baselined and observation.complete and not change.baseline and ended:
            change = replace(change, baseline=True)
            log.warning(
                "baseline taken although the sweep's totals do not add up",
                source=src.name,
                sweeps=tries + 1,
                reason=observation.reason,
            )
        return observation, change

    async def _settled(
        self, src: Source, verdict: plan.Verdict, tally: Tally, *, baselined: bool, now: str
    ) -> tuple[Observation, Change]:
        """The observation of an incremental poll's verdict, diffed against the rows it touched."""
        observation = Observation(
            source=src.name,
            orders=verdict.seen,
            complete=verdict.complete,
            consistent=False,
            full=False,
            reason=verdict.reason,
            requests=tally.requests,
            bytes=tally.bytes,
            distinct=len(verdict.seen),
            gone=frozenset(verdict.gone),
        )
        keys = list({*verdict.seen, *verdict.gone})
        previous = await anyio.to_thread.run_sync(lambda: self.store.known(src.name, keys))
        return observation, diff(previous, observation, baselined=baselined, now=now)

    async def _learn(self, src: Source, notes: Mapping[plan.Capability, tuple[bool, str]], *, dry_run: bool) -> None:
        """Store what the server proved or disproved (``notes``: capability -> (proven, why)), logging each change
        once (a dry run logs and stores nothing)."""
        proven = {c: ok for c, (ok, _) in notes.items()}
        if not proven or dry_run:
            return
        before = await anyio.to_thread.run_sync(self.store.capabilities, src.name)
        for cap, ok in proven.items():
            if before.get(cap, (None, ""))[0] == ok:
                continue
            note = notes[cap][1]
            if ok:
                log.info("the server proved a capability", source=src.name, capability=cap, note=note)
            else:
                log.warning(
                    "the server lacks a capability: polls fall back to a plan that does not need it",
                    source=src.name,
                    capability=cap,
                    note=note,
                )
        now = self.now()
        await anyio.to_thread.run_sync(
            lambda: self.store.learn(src.name, {c: (ok, notes[c][1]) for c, ok in proven.items()}, now=now)
        )

    async def _record(
        self,
        src: Source,
        state: SourceState | None,
        observation: Observation,
        change: Change,
        *,
        started: float,
        now: str,
        dry_run: bool,
    ) -> PollResult:
        self._warn_unknown_states(src, ((o.raw_state, o.state) for o in change.upserts))
        error = None if observation.complete else observation.reason or "the poll could not settle every order"
        settled = observation.complete and (not observation.full or observation.proves_absence)
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
                        full_due=None if settled else (error or observation.reason or "an inconsistent sweep"),
                        served_page=observation.served_page,
                    )
                )
            except StoreError as exc:
                log.error(
                    "store unavailable: events not recorded, will retry next poll", source=src.name, error=str(exc)
                )
                return PollResult(src.name, error=str(exc), outcome=Outcome.FAILED, duration=duration)
            events = tuple(stored)
        seen = observation.distinct if observation.distinct is not None else len(observation.orders)
        result = PollResult(
            source=src.name,
            events=tuple(events),
            error=error,
            outcome=Outcome.OK if error is None else Outcome.PARTIAL,
            baseline=change.baseline,
            orders=seen,
            requests=observation.requests,
            bytes=observation.bytes,
            duration=duration,
            complete=observation.complete,
            consistent=observation.consistent,
            mode="full" if observation.full else "incremental",
        )
        if result.ok and state is not None and state.failures:
            log.info("source recovered", source=src.name, after_failures=state.failures)
        (log.info if result.ok else log.warning)(
            "polled" if result.ok else "polled partially",
            source=src.name,
            mode=result.mode,
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
        self,
        client: httpx.AsyncClient,
        src: Source,
        tally: Tally,
        *,
        baselined: bool,
        now: str,
        dry_run: bool,
        trust_counts: bool,
    ) -> tuple[Observation, Change]:
        """A full sweep, diffed page by page against the store as it streams in."""
        async with FullSweep(self.store, src.name, baselined=baselined, now=now, write=not dry_run) as sweep:
            observation = await paging.stream(client, src, sweep, tally=tally, trust_counts=trust_counts)
            self._warn_unknown_states(src, sweep.seen_states)
            missing: dict[str, Known] = {}
            if observation.proves_absence:
                missing = await sweep.unseen()
                if baselined and missing:
                    found = await self._confirm_absent(client, src, missing, tally)
                    why = "the detail endpoint still has orders the sweep missed"
                    if not found and not (trust_counts and observation.counts_ok):
                        # absence rests on the list's end alone: a search by key, or a second look at the whole
                        # list, must miss them too
                        searched = await self._search_keys(client, src, sweep, missing, tally)
                        if searched is not None:
                            (found, whole), why = searched, "a search by key has orders the sweep missed"
                        else:
                            found, whole = await paging.look_again(client, src, missing, tally)
                            why = "a second look at the list has orders the sweep missed"
                        log.info(
                            "orders missing from a list without usable counts: looked for them again",
                            source=src.name, missing=len(missing), found=len(found), whole=whole,
                            by="search" if searched is not None else "list",
                        )  # fmt: skip
                        if not found and not whole:
                            why = "the look for orders the sweep missed, to confirm them gone, failed"
                            missing = {}
                    if found or not missing:  # the sweep skipped rows, or it is not known that it did not
                        await sweep(tuple(found.values()))
                        missing = {}
                        observation = replace(observation, consistent=False, reason=why)
            elif baselined and observation.complete and observation.end_reached:
                # the counts disagree with the sweep, which still reached the end: an order it missed is gone only
                # once a proven detail endpoint says 404 for it
                candidates = await sweep.unseen()
                missing, found = await self._prove_gone(client, src, sweep, candidates, tally)
                if found:
                    await sweep(tuple(found.values()))
            change = await sweep.result(missing, proves_absence=observation.proves_absence or bool(missing))
        return replace(observation, requests=tally.requests, bytes=tally.bytes), change

    async def _failed(
        self, src: Source, exc: SourceError, started: float, dry_run: bool, state: SourceState | None
    ) -> PollResult:
        duration = time.monotonic() - started
        # logged when a failure starts or changes; the same failure again is only a debug line (no log storm)
        reason = redact(str(exc))  # a server may quote a secret back (a 401 body): never stored or logged
        again = state is not None and state.failures > 0 and state.last_error == reason
        (log.debug if again else log.warning)(
            "poll failed",
            source=src.name,
            error=exc.message,
            retryable=exc.retryable,
            failures=(state.failures + 1) if state is not None else 1,
        )
        if not dry_run:
            try:
                await anyio.to_thread.run_sync(lambda: self.store.record_failure(src.name, reason, now=self.now()))
            except StoreError as store_exc:
                log.error("store unavailable", source=src.name, error=str(store_exc))
        outcome = Outcome.AUTH_FAILED if isinstance(exc, AuthError) else Outcome.FAILED
        return PollResult(src.name, error=str(exc), outcome=outcome, duration=duration)

    async def _confirm_absent(
        self, client: httpx.AsyncClient, src: Source, missing: Mapping[str, Known], tally: Tally
    ) -> dict[str, Order]:
        """Re-read orders a consistent sweep did not see; returns those the detail endpoint still has.

        Any sighting means the sweep skipped rows, so nothing is reported vanished this poll. An answer holding
        another order than the one asked for is no sighting.
        """
        if len(missing) > DETAIL_CHECK_MAX:
            return {}
        found: dict[str, Order] = {}
        deadline = recheck_deadline(src)
        for key in missing:
            try:
                order = await fetch_detail(client, src, key, tally, deadline)
            except SourceError:
                continue  # the sweep was complete and consistent; a failing re-check proves nothing either way
            if order is not None and order.key == key:
                found[key] = order
        if found:
            log.info("sweep skipped rows; no order reported vanished this poll", source=src.name, skipped=len(found))
        return found

    async def _search_keys(
        self, client: httpx.AsyncClient, src: Source, sweep: FullSweep, keys: Mapping[str, Known], tally: Tally
    ) -> tuple[dict[str, Order], bool] | None:
        """Orders a sweep missed, looked up one by one through the list's search by key: a part holding one key is
        one short page, where no deletion elsewhere can move a row. Returns (those the search lists — the others
        are proven gone —, False when a request failed after its retries and nothing is proven), or None when the
        source cannot search by key, there are more than ``DETAIL_CHECK_MAX``, or the search did not prove itself
        first on an order the sweep saw (listing it, and only orders it admits)."""
        adapter = adapter_for(src)
        partition = adapter.partition
        if partition is None or partition.by != "key" or not keys or len(keys) > DETAIL_CHECK_MAX:
            return None
        deadline = recheck_deadline(src)

        async def listed(key: str) -> dict[str, Order] | None:
            part = Part(lo=key)
            req = adapter.list_request(src, adapter.first_cursor(), part=part)
            page = await fetch_page(client, src, req, tally, deadline)
            if page.size > len(page.orders) or not all(partition.admits(part, o.key) for o in page.orders):
                return None  # the search was not applied as asked
            if len(page.orders) >= src.page_size and key not in {o.key for o in page.orders}:
                return None  # a full page without it: it could be on the next one
            return {o.key: o for o in page.orders}

        present = await sweep.stored_keys(exclude=list(keys))
        found: dict[str, Order] = {}
        try:
            probe = await listed(present[0]) if present else None
            if probe is None or present[0] not in probe:
                return None
            for key in keys:
                orders = await listed(key)
                if orders is None:
                    return None
                if key in orders:
                    found[key] = orders[key]
        except SourceError as exc:
            return (found, False) if exc.retryable else None  # a refused search is no search: look at the list
        return found, True

    async def _prove_gone(
        self,
        client: httpx.AsyncClient,
        src: Source,
        sweep: FullSweep,
        candidates: Mapping[str, Known],
        tally: Tally,
    ) -> tuple[dict[str, Known], dict[str, Order]]:
        """Orders a sweep that cannot prove absence did not see, one by one on the detail endpoint (proven first on
        an order the sweep did see): (those it answers 404 for, those it still has). Nothing when there are more
        than ``DETAIL_CHECK_MAX`` or the endpoint cannot be trusted."""
        if not candidates or len(candidates) > DETAIL_CHECK_MAX:
            return {}, {}
        deadline = recheck_deadline(src)
        present = await sweep.stored_keys(exclude=list(candidates))
        try:
            probe = await fetch_detail(client, src, present[0], tally, deadline) if present else None
        except SourceError:
            return {}, {}
        if probe is None or probe.key != present[0]:
            return {}, {}
        gone: dict[str, Known] = {}
        found: dict[str, Order] = {}
        for key, known in candidates.items():
            try:
                order = await fetch_detail(client, src, key, tally, deadline)
            except SourceError:
                continue
            if order is None:
                gone[key] = known
            elif order.key == key:
                found[key] = order
        if gone:
            log.info("orders confirmed gone one by one (404 from the detail endpoint)", source=src.name, gone=len(gone))
        return gone, found

    def _warn_unknown_states(self, src: Source, states: Iterable[tuple[str, str]]) -> None:
        """Log each (raw, canonical) state that is not canonical, once per source and for at most
        ``UNKNOWN_STATES_LOGGED`` of them (an API sending a fresh state per order must not flood the log)."""
        warned = self._warned_states.setdefault(src.name, set())
        for raw, state in states:
            if is_canonical(state) or raw in warned or len(warned) > UNKNOWN_STATES_LOGGED:
                continue
            warned.add(raw)
            if len(warned) > UNKNOWN_STATES_LOGGED:
                log.warning(f"more than {UNKNOWN_STATES_LOGGED} unknown states; no more are logged", source=src.name)
            else:
                log.warning("unknown state kept as is; map it with sources.NAME.states", source=src.name, state=raw)

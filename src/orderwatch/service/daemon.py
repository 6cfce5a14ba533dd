"""``orderwatch run``: the long-running service. The only module with time, signals, threads, APScheduler, sd_notify.

- One APScheduler job per source (its interval and jitter, first run at start, at most one poll per source at a
  time, misfires coalesced); every job is its own asyncio task, so a slow source never delays another.
- A delivery loop sends due outbox rows every ``delivery.interval``; before each step it queues the scheduled
  summaries that are due and logs the silences that ended (``_policies``).
- SIGTERM/SIGINT: no new polls; in-flight polls and the current delivery step get ``GRACE_PERIOD`` seconds to finish
  (below the unit's TimeoutStopSec), then the rest is cancelled; exit 0. A second signal skips the wait.
- SIGHUP: the config is read again; a bad one is logged (every problem) and the running one kept; sources are
  rescheduled, channels and rules swapped (notifications waiting out quiet hours that changed are judged again). It
  never kills the daemon (``hangup``): one that comes while it starts is taken once it has started, and one that
  comes while it stops is ignored.
- One daemon per database (``WriterLock``): a second one exits 1 naming the first one's pid, before it touches the
  database.
- Nothing lives only in memory: snapshots, events and the outbox are in SQLite, each poll one transaction, so a
  kill -9 loses nothing and the next start resumes from the database. At start, the delivery leases left by a killed
  daemon are dropped, so its claimed notifications do not wait out the lease.
- Each poll has a budget (``poll_budget``) and is cancelled, logged and counted as a failure once it runs past
  ``poll_limit``; it runs again at its next interval.
- sd_notify: READY=1 once the scheduler runs, STATUS= with the last poll of each source, STOPPING=1, and WATCHDOG=1
  from the event loop while the daemon is alive: the loop runs, the scheduler runs its heartbeat job, no delivery
  step has hung past ``DELIVERY_STALL`` and no cancelled poll past ``CANCEL_STALL``. A long poll within its limit
  never stops the pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import structlog

from orderwatch import clock, sweep
from orderwatch.config import secrets_of
from orderwatch.core import health
from orderwatch.core.rules import router
from orderwatch.errors import ConfigError, OrderwatchError, SchemaTooNew, StoreError
from orderwatch.service import hangup, sdnotify
from orderwatch.service.log import register_secrets, scrub
from orderwatch.service.metrics import Metrics
from orderwatch.service.writerlock import WriterLock
from orderwatch.store import Store
from orderwatch.sweep import Poller, PollResult

if TYPE_CHECKING:
    from anyio.abc import SocketStream
    from anyio.streams.stapled import MultiListener
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from orderwatch.config import Config
    from orderwatch.sources import Source

log = structlog.get_logger("orderwatch.service.daemon")

GRACE_PERIOD = 20.0  # seconds; below TimeoutStopSec=30s in deploy/orderwatch.service
POLL_SLACK = 5.0  # seconds a poll may run past its budget and one request's deadline before the daemon cancels it
CANCEL_STALL = 60.0  # a cancelled poll that has not ended this many seconds later is stuck: no more watchdog pings
DELIVERY_STALL = 600.0  # a delivery step running longer than this is stuck: no more watchdog pings
SCHEDULER_SLACK = 5.0  # the scheduler's heartbeat job, or a poll, late by this plus two ping intervals: it is stuck


def poll_limit(src: Source) -> float:
    """Seconds after which the daemon cancels a poll of ``src``: its budget, one more request's deadline (the sweep
    cuts itself between requests) and ``POLL_SLACK`` to record what it saw."""
    return sweep.poll_budget(src) + src.timeout + POLL_SLACK


def run_daemon(conf: Config, *, config_path: str | None, database: str | None, grace: float = GRACE_PERIOD) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0 after a clean stop; 1 when the database is unusable or
    another daemon runs on it).

    ``config_path`` is what SIGHUP re-reads (None: the usual search); ``database`` overrides the config's.
    """
    hangups = hangup.install()
    os.umask(0o077)  # the database, its WAL and anything else orderwatch creates: owner only
    path = database or str(conf.database)
    try:
        with WriterLock.acquire(path) if path != ":memory:" else contextlib.nullcontext():
            log.info("starting", pid=os.getpid(), database=path)
            daemon = Daemon(conf, config_path=config_path, database=database, grace=grace, hangups=hangups)
            return anyio.run(daemon.main, backend="asyncio")
    except SchemaTooNew as exc:
        log.error("cannot use the database", error=str(exc))
        return 2  # a restart cannot help: systemd's RestartPreventExitStatus=2 keeps it down
    except StoreError as exc:
        log.error("cannot use the database", error=str(exc))
        return 1
    finally:
        hangups.ignore()


def _iso(when: datetime | None) -> str | None:
    return clock.text(when) if when else None


class Daemon:
    """The scheduler, the delivery loop, the signal handling and the bookkeeping around each poll."""

    def __init__(
        self,
        conf: Config,
        *,
        config_path: str | None,
        database: str | None,
        grace: float,
        hangups: hangup.Hangups | None = None,
    ) -> None:
        self.conf = conf
        self.config_path = config_path
        self.database_override = database
        self.grace = grace
        self.metrics = Metrics()
        self.stopping = anyio.Event()
        self.hurry = anyio.Event()  # a second stop signal: do not wait for the grace period
        self.hangups = hangups or hangup.Hangups()
        self._reload_wanted = anyio.Event()
        self.inflight: dict[str, tuple[anyio.CancelScope, float, float]] = {}  # source → (scope, started, limit)
        self.delivery_started: float | None = None
        self.ticked: float | None = None  # when the scheduler last ran its heartbeat job (with a watchdog only)
        self.last_polls: dict[str, str] = {}  # source → a short line for STATUS=
        self.auth_logged: set[str] = set()
        self._scheduler: AsyncIOScheduler | None = None
        self._poller: Poller | None = None
        self._store: Store | None = None

    @property
    def scheduler(self) -> AsyncIOScheduler:
        """The running APScheduler."""
        assert self._scheduler is not None
        return self._scheduler

    @property
    def store(self) -> Store:
        """The open database."""
        assert self._store is not None
        return self._store

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    async def main(self) -> int:
        """Open the database and the HTTP clients, run until stopped, close everything.

        SIGTERM/SIGINT are taken from the start: one that comes while the database opens stops the daemon as soon as
        it has started.
        """
        path = self.database_override or str(self.conf.database)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            self._store = await anyio.to_thread.run_sync(Store.open, path)
            try:
                async with sweep.clients() as pool:
                    self._poller = Poller(self.store, pool, router=router(self.conf.rules, self.conf.channels))
                    await self._serve(signals)
            finally:
                await anyio.to_thread.run_sync(self._forget_schedule)
                self.store.close()
            log.info("stopped")
        return 0

    async def _serve(self, signals: AsyncIterator[int]) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        await anyio.to_thread.run_sync(self._release_pending)
        loop = asyncio.get_running_loop()

        def wanted() -> None:  # on the loop: set the event current then, not the one when the signal came
            self._reload_wanted.set()

        def wake() -> None:  # in the main thread, from the SIGHUP handler
            with contextlib.suppress(RuntimeError):  # the loop is closing: the daemon is stopping anyway
                loop.call_soon_threadsafe(wanted)

        self.hangups.wake = wake
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._signal_loop, signals)
                tg.start_soon(self._reload_loop)
                if self.conf.metrics.listen:
                    await self._start_metrics(tg, self.conf.metrics.listen)
                self._scheduler = AsyncIOScheduler(timezone=UTC)
                self.scheduler.start()
                for src in self.conf.sources.values():
                    self._schedule(src)
                tg.start_soon(self._delivery_loop)
                every = sdnotify.watchdog_interval()
                if every is not None:
                    self._schedule_heartbeat(every)
                    tg.start_soon(self._watchdog_loop, every)
                sdnotify.notify(f"READY=1\nSTATUS=polling {len(self.conf.sources)} source(s)\nMAINPID={os.getpid()}")
                log.info("started", sources=list(self.conf.sources), pid=os.getpid(), database=str(self.store.path))
                if self.hangups.count:
                    log.info("SIGHUP came while starting: reading the config again")
                    self._reload_wanted.set()
                await self.stopping.wait()
                sdnotify.notify("STOPPING=1\nSTATUS=stopping: finishing in-flight polls and deliveries")
                await self._drain()
                tg.cancel_scope.cancel()
        finally:
            self.hangups.wake = None

    async def _drain(self) -> None:
        """No new polls; wait up to the grace period for in-flight polls and the delivery step, then cancel."""
        self.scheduler.pause()
        with anyio.move_on_after(self.grace):
            while (self.inflight or self.delivery_started is not None) and not self.hurry.is_set():
                with anyio.move_on_after(0.05):
                    await self.hurry.wait()
        if self.inflight:
            log.warning(
                "grace period over: cancelling polls (they run again at the next start)", sources=sorted(self.inflight)
            )
            for scope, _started, _limit in list(self.inflight.values()):
                scope.cancel()
        self.scheduler.shutdown(wait=False)
        await anyio.lowlevel.checkpoint()  # AsyncIOScheduler.shutdown runs on the next loop iteration

    async def _reload_loop(self) -> None:
        """SIGHUP: one reload per wake-up (hang-ups that come during a reload make one more); none once stopping."""
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted = anyio.Event()
            if not self.stopping.is_set():
                await self.reload()

    async def _signal_loop(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if self.stopping.is_set():
                log.warning("second stop signal: not waiting for in-flight work", signal=signal.Signals(signum).name)
                self.hurry.set()
            else:
                log.info("stopping", signal=signal.Signals(signum).name, grace=self.grace)
                self.stopping.set()

    def _release_pending(self) -> None:
        """Release leases left by a killed process, so its claimed notifications are not held up (their backoff
        schedule is kept)."""
        released = self.store.release_leases()
        if released:
            log.info("resuming notifications claimed by a stopped process", released=released)

    def _forget_schedule(self) -> None:
        """Clear ``next poll`` of every source: nothing is scheduled while no daemon runs."""
        try:
            for name in self.conf.sources:
                self.store.set_next_poll(name, None)
        except StoreError as exc:
            log.error("store unavailable", error=str(exc))

    async def _start_metrics(self, tg: anyio.abc.TaskGroup, listen: str) -> None:
        from orderwatch.service import metrics

        try:
            listener = await metrics.bind(listen)
        except (ConfigError, OSError) as exc:
            log.error("metrics not served", listen=listen, error=str(exc))
            return
        host, port = metrics.address(listener)
        tg.start_soon(self._serve_metrics, listener)
        log.info("serving metrics", url=f"http://{host}:{port}/metrics")

    async def _serve_metrics(self, listener: MultiListener[SocketStream]) -> None:
        """The metrics server, fenced off: whatever ends it is logged, and the daemon carries on without it."""
        from orderwatch.service import metrics

        try:
            await metrics.serve(self.metrics, listener)
        except Exception:
            log.exception("metrics server failed; metrics are not served until the next start")

    # ---- scheduling --------------------------------------------------------------------------------------------

    def _schedule(self, src: Source) -> None:
        """(Re)schedule the job of ``src``: first poll now, then every interval plus up to ``jitter`` seconds."""
        from apscheduler.triggers.interval import IntervalTrigger

        self.scheduler.add_job(
            self._poll_job,
            IntervalTrigger(seconds=src.interval, jitter=src.jitter or None, timezone=UTC),
            args=(src.name,),
            id=f"poll:{src.name}",
            name=f"poll {src.name}",
            next_run_time=datetime.now(UTC),
            max_instances=2,  # the second returns at once while one runs (see _poll_job), without a warning each time
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
        )

    def _schedule_heartbeat(self, every: float) -> None:
        """A job every ``every`` seconds that only notes it ran: the watchdog's proof that the scheduler runs jobs."""
        from apscheduler.triggers.interval import IntervalTrigger

        self.ticked = time.monotonic()
        self.scheduler.add_job(
            self._heartbeat,
            IntervalTrigger(seconds=every, timezone=UTC),
            id="heartbeat",
            name="watchdog heartbeat",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    async def _heartbeat(self) -> None:
        self.ticked = time.monotonic()

    def _next_poll(self, name: str) -> str | None:
        job = self.scheduler.get_job(f"poll:{name}") if not self.stopping.is_set() else None
        return _iso(job.next_run_time) if job is not None else None

    async def _poll_job(self, name: str) -> None:
        """One scheduled poll of source ``name`` (with the config current when it starts), cancelled once it runs
        past ``poll_limit``; none while the last one still runs."""
        src = self.conf.sources.get(name)
        if src is None or self.stopping.is_set() or self._poller is None or name in self.inflight:
            return
        limit = poll_limit(src)
        started = time.monotonic()
        scope = anyio.CancelScope(deadline=anyio.current_time() + limit)
        self.inflight[name] = (scope, started, limit)
        try:
            result: PollResult | None = None
            with scope:
                result = await self._poller.poll(src)
            if result is None and not self.stopping.is_set():
                result = await self._cancelled(src, time.monotonic() - started)
            if result is not None:
                await self._after_poll(result)
        except Exception:
            log.exception("poll crashed; it will run again on schedule", source=name)
        finally:
            del self.inflight[name]

    async def _cancelled(self, src: Source, ran: float) -> PollResult:
        """A poll cancelled past its limit: logged, and recorded as the source's failure."""
        budget = sweep.poll_budget(src)
        error = (
            f"poll cancelled after {ran:.0f} s: past its budget of {budget:.0f} s (sources.{src.name}.max_pages x "
            "timeout + retry_budget) and a margin; the source answers too slowly, or a request never ends"
        )
        log.warning(
            "poll cancelled: it ran past its budget; it runs again at its next interval",
            source=src.name,
            budget=round(budget, 3),
            limit=round(poll_limit(src), 3),
            ran=round(ran, 3),
        )
        try:
            await anyio.to_thread.run_sync(lambda: self.store.record_failure(src.name, error, now=clock.now_text()))
        except StoreError as exc:
            log.error("store unavailable", source=src.name, error=str(exc))
        return PollResult(src.name, error=error, outcome=sweep.Outcome.FAILED, duration=ran)

    async def _after_poll(self, result: PollResult) -> None:
        name = result.source
        self.metrics.observe_poll(result, time.time())
        if result.auth_failed and name not in self.auth_logged:
            self.auth_logged.add(name)
            log.error(
                "the source rejected the token: fix sources.NAME.token (or its token_file/token_credential), "
                "then reload with SIGHUP (systemctl reload orderwatch)",
                source=name,
                error=scrub(result.error or ""),
            )
        elif result.ok:
            self.auth_logged.discard(name)
        next_at = self._next_poll(name)
        notice = await anyio.to_thread.run_sync(self._bookkeep, result, next_at)
        if notice is not None:
            if notice.kind == "alert":
                log.warning("source unhealthy: alert sent", source=name, channel=self.conf.health.channel)
            else:
                log.info("source recovered", source=name, channel=self.conf.health.channel)
        stamp = clock.time_of_day(clock.now())
        if result.ok:
            self.last_polls[name] = f"{name} ok {stamp} ({result.orders} orders, {len(result.events)} events)"
        else:
            self.last_polls[name] = f"{name} FAILED {stamp}"
        sdnotify.notify("STATUS=" + "; ".join(self.last_polls[n] for n in sorted(self.last_polls)))

    def _bookkeep(self, result: PollResult, next_at: str | None) -> health.HealthNotice | None:
        """In a worker thread: remember the next poll, decide on health, queue the health notice if any."""
        store, conf, now = self.store, self.conf, clock.now_text()
        try:
            store.set_next_poll(result.source, next_at)
            state = store.source_state(result.source)
            if state is None:
                return None
            notice = health.assess(state, conf.health.thresholds, ok=result.ok, now=now, auth_failed=result.auth_failed)
            if notice is None:
                return None
            if conf.health.channel is not None:
                store.enqueue_notice(conf.health.channel, health.RULE, notice.title, scrub(notice.body), now=now)
            store.set_alerted(result.source, notice.kind == "alert")
            return notice
        except StoreError as exc:
            log.error("store unavailable", source=result.source, error=str(exc))
            return None

    # ---- delivery ----------------------------------------------------------------------------------------------

    async def _delivery_loop(self) -> None:
        from orderwatch.delivery.deliverer import Deliverer

        while not self.stopping.is_set():
            self.delivery_started = time.monotonic()
            try:
                conf = self.conf
                await anyio.to_thread.run_sync(self._policies)
                deliverer = Deliverer(self.store, conf.channels, conf.rules, conf.delivery.retry, sources=conf.sources)
                report = await deliverer.deliver_due()
                self.metrics.observe_delivery(report)
                self.metrics.outbox_depth = await anyio.to_thread.run_sync(self.store.outbox_depth)
            except OrderwatchError as exc:
                log.error("delivery step failed; will try again", error=str(exc))
            except Exception:
                log.exception("delivery step crashed; will try again")
            finally:
                self.delivery_started = None
            with anyio.move_on_after(self.conf.delivery.interval):
                await self.stopping.wait()

    def _policies(self) -> None:
        """In a worker thread: queue the scheduled summaries that are due; log each silence that ended, once."""
        from orderwatch.delivery import summaries

        now = clock.now()
        if self.conf.summaries:
            summaries.queue_due(self.store, self.conf.summaries, self.conf.sources, now)
        for ended in self.store.newly_ended_silences(now=clock.text(now)):
            log.info(
                "silence ended",
                silence=ended.id,
                source=ended.source,
                order=ended.order_id,
                rule=ended.rule,
                ended_at=ended.ended_at(),
                by_hand=ended.expired_at is not None and ended.expired_at < ended.ends_at,
            )

    # ---- watchdog ----------------------------------------------------------------------------------------------

    async def _watchdog_loop(self, every: float) -> None:
        """Ping WATCHDOG=1 from the event loop every ``every`` seconds while the daemon is alive: the loop runs (or
        there would be no ping), and ``stall`` finds nothing stuck. How long a poll takes within its limit does not
        matter."""
        last = time.monotonic()
        while True:
            await anyio.sleep(every)
            now = time.monotonic()
            late, last = now - last - every, now
            if late > every:
                log.warning("the event loop was blocked", seconds=round(late, 1))
            problem = self.stall(now, every)
            if problem is None:
                sdnotify.notify("WATCHDOG=1")
            else:
                log.warning("watchdog ping withheld: the daemon is stuck", reason=problem)

    def stall(self, now: float, every: float) -> str | None:
        """Why the daemon is stuck, or None: a cancelled poll that does not end (a call in a thread that never
        returns), a delivery step running past ``DELIVERY_STALL``, or a scheduler that runs no job."""
        for name, (_scope, started, limit) in self.inflight.items():
            if now - started > limit + CANCEL_STALL:
                return f"the poll of {name} was cancelled {now - started - limit:.0f} s ago and has not ended"
        if self.delivery_started is not None and now - self.delivery_started > DELIVERY_STALL:
            return f"delivery step running for {now - self.delivery_started:.0f} s"
        if self.stopping.is_set():
            return None
        if self.ticked is not None and now - self.ticked > 2 * every + SCHEDULER_SLACK:
            return f"the scheduler has run no job for {now - self.ticked:.0f} s"
        if self._scheduler is None:
            return None
        overdue = datetime.now(UTC).timestamp() - 2 * every - SCHEDULER_SLACK
        for job in self.scheduler.get_jobs():
            name = job.id.removeprefix("poll:")
            if name == job.id or job.next_run_time is None or name in self.inflight:
                continue
            if job.next_run_time.timestamp() < overdue:
                return f"the poll of {name} is overdue"
        return None

    # ---- reload ------------------------------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: read the config again; keep the running one if the new one has any problem."""
        from orderwatch import config
        from orderwatch.core import render
        from orderwatch.delivery import notify

        def load() -> Config:
            return config.load_config(
                self.config_path, check_template=render.check_template, check_url=notify.check_url
            )

        try:
            new = await anyio.to_thread.run_sync(load)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config reload failed; keeping the running config", path=exc.path, problem=scrub(problem))
            return
        register_secrets(secrets_of(new))
        old, self.conf = self.conf, new
        if self._poller is not None:
            self._poller.router = router(new.rules, new.channels)
        for what, before, after in (
            ("database", old.database, new.database),
            ("metrics.listen", old.metrics.listen, new.metrics.listen),
            ("log", old.log, new.log),
        ):
            if before != after and not (what == "database" and self.database_override):
                log.warning("this setting changes only at the next start", setting=what)
        removed = [n for n in old.sources if n not in new.sources]
        added = [n for n in new.sources if n not in old.sources]
        changed = [n for n in new.sources if n in old.sources and new.sources[n] != old.sources[n]]
        for name in removed:
            if self.scheduler.get_job(f"poll:{name}") is not None:
                self.scheduler.remove_job(f"poll:{name}")
            self.last_polls.pop(name, None)
        for name in added + changed:
            self._schedule(new.sources[name])
        if removed:
            await anyio.to_thread.run_sync(self._unschedule, removed)
        requiet = [n for n, ch in old.channels.items() if ch.quiet != getattr(new.channels.get(n), "quiet", None)]
        if requiet:  # rows waiting out quiet hours that changed are judged again under the new ones
            await anyio.to_thread.run_sync(lambda: self.store.wake_held(requiet, now=clock.now_text()))
        log.info(
            "config reloaded",
            added=added,
            removed=removed,
            changed=changed,
            channels=list(new.channels),
            rules=len(new.rules),
        )

    def _unschedule(self, names: list[str]) -> None:
        for name in names:
            self.store.set_next_poll(name, None)

"""What the commands do, beyond parsing their options: one poll, following events, checking sources and channels.

The CLI and the demo call these; the daemon reuses the same ``Poller`` and delivery step on a schedule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from orderwatch import sweep
from orderwatch.core.rules import router
from orderwatch.errors import SourceError, StoreError
from orderwatch.sources import Source, adapter_for
from orderwatch.sources import json as json_api
from orderwatch.store import EventFilter, Store
from orderwatch.sweep import Poller, PollResult

if TYPE_CHECKING:
    from orderwatch.config import Config
    from orderwatch.core.model import Event, Page


def dry_run_store(database: str) -> Store:
    """For ``poll --dry-run``: the database read-only if it exists, else an empty in-memory one."""
    if Path(database).exists():
        return Store.open(database, readonly=True)
    return Store.open(":memory:")


async def poll_once(
    conf: Config, store: Store, names: Sequence[str], *, dry_run: bool, notify: bool, full: bool | None = None
) -> tuple[list[PollResult], bool]:
    """Poll the named sources (all when empty) once; deliver due notifications when ``notify``.

    Returns the poll results and whether any delivery failed.
    """
    async with sweep.clients() as pool:
        poller = Poller(store, pool, router=router(conf.rules, conf.channels))
        chosen = [conf.sources[n] for n in names] if names else list(conf.sources.values())
        results = await poller.poll_many(chosen, dry_run=dry_run, full=full)
    delivery_failed = False
    if notify:
        from orderwatch.delivery.deliverer import Deliverer

        deliverer = Deliverer(store, conf.channels, conf.rules, conf.delivery.retry, sources=conf.sources)
        report = await deliverer.deliver_due()
        delivery_failed = report.failed > 0 or report.retrying > 0
    return results, delivery_failed


def follow_events(
    store: Store,
    flt: EventFilter,
    after_id: int,
    emit: Callable[[list[Event]], None],
    *,
    every: float = 1.0,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Print events recorded after ``after_id`` as they arrive, until ``stop()`` or Ctrl-C."""
    last = after_id
    try:
        while not stop():
            fresh = store.events(
                EventFilter(source=flt.source, order_id=flt.order_id, state=flt.state, kind=flt.kind, after_id=last)
            )
            if fresh:
                emit(fresh)
                last = fresh[-1].id or last
            else:
                time.sleep(every)
    except KeyboardInterrupt:
        return


async def check_sources(conf: Config) -> list[tuple[str, bool]]:
    """``check --connect``: fetch one page from each source and report auth or shape problems."""
    lines: list[tuple[str, bool]] = []
    async with sweep.clients() as pool:
        for src in conf.sources.values():
            adapter = adapter_for(src)
            req = adapter.list_request(src, adapter.first_cursor())
            try:
                sweep.check_transport(src)
                page = await sweep.fetch_page(pool.for_source(src), src, req, sweep.Tally(), time.monotonic() + 30)
            except SourceError as exc:
                lines.append((f"{src.name}: FAILED — {exc.message}", False))
                continue
            total = f", {page.total} in all" if page.total is not None else ""
            lines.append((f"{src.name}: OK — {len(page.orders)} orders on the first page{total}", True))
            lines += [(f"{src.name}: WARNING — {note}", True) for note in json_notes(src, page)]
    return lines


def json_notes(src: Source, page: Page) -> list[str]:
    """A ``kind = "json"`` source's notes on its first order (optional paths that find nothing, unmapped state)."""
    if src.api is None:
        return []
    if not page.orders:
        return ["the first page has no order: the key, state and time paths could not be checked"]
    return json_api.first_order_notes(src, orjson.loads(page.orders[0].raw_json))


async def check_channels(conf: Config) -> list[tuple[str, bool]]:
    """``check --notify``: send a test message to every channel; one line per URL, secrets masked."""
    from orderwatch.core import render
    from orderwatch.delivery import notify

    lines: list[tuple[str, bool]] = []
    notice = render.test_notice()
    for channel in conf.channels.values():
        urls = [u.reveal() for u in channel.urls]
        for result in await notify.send(urls, notice):
            masked = notify.mask_url(urls[result.index])
            if result.ok:
                lines.append((f"{channel.name}: {masked}: sent", True))
            else:
                kind = "permanent failure" if result.permanent else "failed"
                lines.append((f"{channel.name}: {masked}: {kind} — {result.reason}", False))
    return lines


__all__ = ["StoreError", "check_channels", "check_sources", "dry_run_store", "follow_events", "poll_once"]

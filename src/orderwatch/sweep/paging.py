"""Paging through a source's whole list, newest first, and saying whether the sweep proves what it did not see.

- Pagination is the adapter's (offset or page number); an offset advances by the items received, never by the
  page size asked, because servers clamp page sizes silently.
- When the first page tells how many pages there are, the rest are fetched a few at a time and handed over in
  list order; a page that ends elsewhere than planned (a short page) makes paging go on from where it really ended.
  The plan is never longer than ``max_pages``, whatever number the server sent.
- A count or last page number is checked, not trusted: when it says the list ends, the page after it is asked for
  and must be empty. A count that is negative, below the orders listed, or followed by more orders is no evidence
  (the sweep proves absence only by reaching an empty page).
- The sweep is *consistent* — its missing orders are gone — only when it is complete, its pages joined up, and
  either its sane totals did not move and match the distinct orders seen, or (no usable totals) it reached an
  empty page past the end.
- The pages' creation times say whether the server sorted the list as asked (newest first).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Final, Protocol

import anyio
import httpx

from orderwatch.core.model import Observation, Order, Page
from orderwatch.errors import SourceError
from orderwatch.sources import Adapter, Skip, Source, adapter_for
from orderwatch.sweep.http import Tally, check_transport, fetch_page

PAGE_CONCURRENCY: Final = 4  # pages of one sweep fetched at once, when the API tells how many there are


class PageSink(Protocol):
    """Takes a sweep's pages in list order."""

    @property
    def skip(self) -> Skip | None:
        """The test that leaves orders the sink has unchanged out of the pages (None: every order is handed over).
        Pages are parsed as they arrive, in any order, and a page may be parsed more than once (retries)."""
        ...

    async def __call__(self, orders: tuple[Order, ...]) -> None: ...

    async def distinct(self) -> int:
        """How many distinct orders (by key) it has taken."""
        ...


class _Collect:
    """The in-memory sink: keeps every order by key (a later sighting of a row pushed down replaces the earlier)."""

    skip = None

    def __init__(self) -> None:
        self.seen: dict[str, Order] = {}

    async def __call__(self, orders: tuple[Order, ...]) -> None:
        for order in orders:
            self.seen[order.key] = order.compact()

    async def distinct(self) -> int:
        return len(self.seen)


class _Lookout:
    """The sink of a second look at the list: keeps only the orders among ``keys``, builds nothing else to keep."""

    skip = None

    def __init__(self, keys: Collection[str]) -> None:
        self.keys = keys
        self.found: dict[str, Order] = {}
        self.taken = 0

    async def __call__(self, orders: tuple[Order, ...]) -> None:
        self.taken += len(orders)
        for order in orders:
            if order.key in self.keys:
                self.found[order.key] = order.compact()

    async def distinct(self) -> int:
        return self.taken  # an upper bound: the look proves nothing by counts, only by reaching the end


async def look_again(
    client: httpx.AsyncClient, src: Source, keys: Collection[str], tally: Tally
) -> tuple[dict[str, Order], bool]:
    """Page through the whole list once more for ``keys`` (orders a sweep missed): (those listed now, whether the
    look was whole — complete, to the end of the list). A list without usable counts proves absence only by its
    end, and an order deleted on an earlier page while a later one was asked pulls a row past the page boundary
    unseen. A second look makes such a skip unlikely, not impossible (drift can skip the same row again); the poller
    asks the list's search by key first where there is one, which is one short page per order."""
    lookout = _Lookout(keys)
    try:
        second = await stream(client, src, lookout, tally=tally, trust_counts=False)
    except SourceError:
        return lookout.found, False
    return lookout.found, second.complete and second.end_reached


@dataclass(slots=True)
class _Sweep:
    """The bookkeeping of one sweep, page by page, in list order."""

    src: Source
    adapter: Adapter
    distinct: int = 0
    totals: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    complete: bool = True
    expected_from: int | None = None  # Laravel: where the next page must start
    expected_cursor: int | None = None  # where the previous page says the next one starts
    pages: int = 0
    bad_count: str | None = None  # why the totals are no evidence
    end_reached: bool = False  # an empty page ended the sweep
    unsorted: str | None = None  # why the list is not newest first
    oldest: str | None = None  # the creation time of the last item so far
    tokens: set[str] = field(default_factory=set)  # token paging: every next page pointed to so far
    last_size: int = 0  # orders on the previous page
    served_page: int | None = None  # see ``Observation.served_page``

    def add(self, cursor: int, page: Page) -> tuple[int | None, bool]:
        """Account for one page whose orders the sink took: the cursor after it (None: it was empty, the end, or
        it points back to a page already listed), and whether its totals say it was the last."""
        self.pages += 1
        if page.size and 0 < self.last_size < self.src.page_size:  # a short page, and more came after it
            self.served_page = max(self.served_page or 0, self.last_size)
        self.last_size = page.size
        if self.adapter.follow is not None and page.next is not None:
            if page.next in self.tokens:  # a cycle: following on would list the same pages again
                self.fail(f"page {self.pages} points back to a page already listed (a paging cycle)")
                return None, False
            self.tokens.add(page.next)
        if page.total is not None:
            self.totals.append(page.total)
            if page.total < 0:
                self.bad_count = self.bad_count or f"the API counts {page.total} orders"
        if self.expected_cursor is not None and cursor != self.expected_cursor:
            self.reasons.append(f"rows were skipped between pages (next page at {self.expected_cursor}, not {cursor})")
        if page.first_item is not None and page.size:
            if self.expected_from is not None and page.first_item != self.expected_from:
                self.reasons.append(
                    f"rows shifted between pages (page started at {page.first_item}, not {self.expected_from})"
                )
            self.expected_from = page.first_item + page.size
        self._check_order(page)
        nxt = self.adapter.next_cursor(cursor, page)
        self.expected_cursor = nxt
        if nxt is None:
            self.end_reached = True
        return nxt, self.adapter.says_last(cursor, page)

    def _check_order(self, page: Page) -> None:
        if self.unsorted is None and page.size:
            if page.newest_first is False:
                self.unsorted = "a page was not in newest-first order"
            elif self.oldest is not None and page.newest is not None and page.newest > self.oldest:
                self.unsorted = "a page began with an order newer than the previous page's last"
        if page.oldest is not None:
            self.oldest = page.oldest

    def overran(self, cursor: int, page: Page) -> None:
        """The page after the one whose totals said it was the last has orders: the totals are no evidence."""
        self.bad_count = self.bad_count or (
            f"the API's count/last page said the list ended, but the next page (at {cursor}) has {page.size} orders"
        )

    def fail(self, reason: str) -> None:
        self.reasons.append(reason)
        self.complete = False

    def observation(self, tally: Tally, *, trust_counts: bool) -> Observation:
        consistent = self.complete and not self.reasons
        sane = [t for t in self.totals if t >= 0]
        if self.complete and sane and self.bad_count is None and self.distinct > sane[-1]:
            self.bad_count = f"the API counts {sane[-1]} but the sweep saw {self.distinct} distinct orders"
        counts_ok = None if not self.totals else self.bad_count is None
        if self.complete and counts_ok and trust_counts:
            if min(self.totals) != max(self.totals):
                self.reasons.append(f"the total moved during the sweep ({min(self.totals)} … {max(self.totals)})")
                consistent = False
            elif self.distinct < self.totals[-1]:
                # the list ended (an empty page) short of a count that held still: the count is no evidence, or
                # rows were skipped; this sweep proves nothing, and the next ones no longer rely on the count
                self.reasons.append(
                    f"the list ended after {self.distinct} distinct orders but the API counts {self.totals[-1]}"
                )
                consistent = False
                counts_ok = not self.end_reached
        elif self.complete and not self.end_reached:
            self.reasons.append("the sweep did not reach an empty page (no usable count to prove the end)")
            consistent = False
        if self.totals and not trust_counts:
            self.reasons.append("counts are no evidence (learned earlier): absence rests on the empty page")
        if self.bad_count is not None:
            self.reasons.append(f"counts are no evidence: {self.bad_count}")
        return Observation(
            source=self.src.name,
            orders={},
            complete=self.complete,
            consistent=consistent,
            full=True,
            reason="; ".join(self.reasons) or None,
            requests=tally.requests,
            bytes=tally.bytes,
            distinct=self.distinct,
            counts_ok=counts_ok,
            end_reached=self.end_reached,
            sorted_ok=None if self.oldest is None else self.unsorted is None,
            served_page=self.served_page,
        )


async def stream(
    client: httpx.AsyncClient,
    src: Source,
    sink: PageSink,
    *,
    concurrency: int = PAGE_CONCURRENCY,
    tally: Tally | None = None,
    trust_counts: bool = True,
) -> Observation:
    """Page through the whole list of ``src``, newest first, handing each page to ``sink`` in list order, so memory
    does not grow with the size of the list. Orders the sink's ``skip`` takes as unchanged are left out of the pages
    as they are parsed. The returned observation says how the sweep went; its ``orders`` are empty (the sink has
    them). ``trust_counts=False``: the API's counts were found to be no evidence; the end is proven by an empty page
    alone. Raises ``SourceError`` if not even the first page could be had.
    """
    check_transport(src)
    adapter = adapter_for(src)
    deadline = time.monotonic() + src.retry_budget
    tally = tally if tally is not None else Tally()
    acc = _Sweep(src, adapter)
    skip = sink.skip

    async def get(cursor: int, before: Page | None = None) -> Page:
        """The page at ``cursor``; with token paging, the one ``before`` points to (its cursor or next URL)."""
        follow = adapter.follow
        req = follow(src, before) if follow is not None and before is not None else adapter.list_request(src, cursor)
        return await fetch_page(client, src, req, tally, deadline, skip)

    async def take(cursor: int, page: Page) -> tuple[int | None, bool]:
        await sink(page.orders)
        return acc.add(cursor, page)

    async def done() -> Observation:
        acc.distinct = await sink.distinct()
        return acc.observation(tally, trust_counts=trust_counts)

    cursor = adapter.first_cursor()
    first = await get(cursor)
    nxt, last = await take(cursor, first)
    previous = first
    planned = adapter.plan(first, cursor, max(0, src.max_pages - 1)) if concurrency > 1 and not last else []
    if nxt is not None and planned and planned[0] == nxt:
        async with _Window(get, planned, concurrency) as pages:
            async for planned_cursor, result in pages:
                if planned_cursor != nxt:
                    break  # a page ended elsewhere than planned (a short page, or the list ended): page on from there
                if isinstance(result, SourceError):
                    acc.fail(f"page at {planned_cursor} failed: {result.message}")
                    return await done()
                nxt, last = await take(planned_cursor, result)
                previous = result
                if nxt is None:
                    break
    # sequential paging: after the first page, beyond the plan (the list grew meanwhile), and past the claimed end;
    # token paging (a cursor or Link each page gives) is sequential all the way, and complete only at its end
    while nxt is not None:
        if acc.pages >= src.max_pages:
            acc.fail(f"stopped after max_pages ({src.max_pages}) pages; raise sources.{src.name}.max_pages")
            break
        try:
            page = await get(nxt, previous)
        except SourceError as exc:
            acc.fail(f"page {acc.pages + 1} failed: {exc.message}")
            break
        if page.size and page.ends is not None and page.ends == previous.ends and page.size == previous.size:
            if not last:  # the same page again at another position: the server ignores the paging parameter
                acc.fail(f"the server answered page {acc.pages + 1} with the orders of the page before it")
            break  # past the claimed end, a repeat of the last page is no order the count missed
        if last and page.size:
            acc.overran(nxt, page)
        nxt, last = await take(nxt, page)
        previous = page
    return await done()


async def collect(
    client: httpx.AsyncClient, src: Source, *, tally: Tally | None = None, trust_counts: bool = True
) -> Observation:
    """Page through the whole list of ``src`` and keep every order seen (see ``stream``)."""
    sink = _Collect()
    result = await stream(client, src, sink, tally=tally, trust_counts=trust_counts)
    return replace(result, orders=sink.seen)


class _Window:
    """Fetches pages at ``cursors`` with ``concurrency`` requests in flight, and hands them over in order, each a page
    or its error; requests keep flowing while the caller works on a page. Leaving the block cancels the rest."""

    def __init__(self, get: Callable[[int], Awaitable[Page]], cursors: Sequence[int], concurrency: int) -> None:
        self._get = get
        self._cursors = cursors
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._ahead = anyio.Semaphore(2 * concurrency)  # pages fetched or in flight, not yet handed over
        self._ready = [anyio.Event() for _ in cursors]
        self._results: dict[int, Page | SourceError] = {}  # fetched, not yet handed over
        self._tg = anyio.create_task_group()
        self._next = 0

    async def __aenter__(self) -> _Window:
        await self._tg.__aenter__()
        self._tg.start_soon(self._feed)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(exc_type, exc, tb)

    async def _feed(self) -> None:
        for i in range(len(self._cursors)):
            await self._ahead.acquire()
            self._tg.start_soon(self._one, i)

    async def _one(self, i: int) -> None:
        async with self._limiter:
            try:
                self._results[i] = await self._get(self._cursors[i])
            except SourceError as exc:
                self._results[i] = exc
        self._ready[i].set()

    def __aiter__(self) -> _Window:
        return self

    async def __anext__(self) -> tuple[int, Page | SourceError]:
        i = self._next
        if i >= len(self._cursors):
            raise StopAsyncIteration
        await self._ready[i].wait()
        result = self._results.pop(i)
        self._next = i + 1
        self._ahead.release()
        return self._cursors[i], result

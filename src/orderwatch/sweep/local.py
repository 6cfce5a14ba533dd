"""The snapshot's side of an incremental plan: what the plan starts from (``knowledge``) and the answers to its
questions about stored orders (``answerer``), read from the store. Blocking: run in a worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from orderwatch import clock
from orderwatch.core.model import Page
from orderwatch.sources import Part, Partition, Source, adapter_for
from orderwatch.sweep import plan
from orderwatch.sweep.reconcile import Local

if TYPE_CHECKING:
    from orderwatch.store import Store

RECHECK: Final = timedelta(hours=24)  # a capability the server lacked is tried again after this long


def raw_states(src: Source, canonical: set[str], seen: Iterable[str] = ()) -> list[str]:
    """The raw states, spelled as the API spells them, that map to ``canonical`` states (Ace ``Pending``, Lsky
    ``unpaid``, or as ``seen`` in its answers); a raw state the user mapped (``states = { "0" = … }``) is sent as
    written. A name the format's default mapping only accepts in case an API sends it (Ace has no ``cancelled``)
    is not asked for until an answer holds it: a server whose filter knows its own states answers it with HTTP 400
    (django-filter's ``MultipleChoiceFilter``)."""
    adapter = adapter_for(src)
    spelled = {raw.casefold(): raw for raw in (*adapter.raw_states, *seen)}
    return sorted(
        {
            spelled.get(raw, raw)
            for raw, state in src.states.items()
            if state in canonical and (raw in spelled or adapter.default_states.get(raw) != state)
        }
    )


def partition_of(src: Source) -> Partition | None:
    """How the source's list can be counted part by part, unless the user's params already use that filter."""
    partition = adapter_for(src).partition
    return partition if partition is not None and partition.usable(src.params) else None


def capabilities(store: Store, src: Source) -> dict[plan.Capability, bool | None]:
    """What the server has proven: a capability it lacked counts as unknown again after ``RECHECK``."""
    now = clock.now()
    stored = store.capabilities(src.name)
    found: dict[plan.Capability, bool | None] = {}
    for cap in plan.CAPABILITIES:
        if cap in stored:
            ok, learned_at = stored[cap]
            stale = not ok and clock.seconds_between(learned_at, now) >= RECHECK.total_seconds()
            found[cap] = None if stale else ok
    return found


def knowledge(store: Store, src: Source, caps: Mapping[plan.Capability, bool | None]) -> plan.Knowledge:
    """What an incremental plan of ``src`` starts from. Its pages are the server's: the page size asked, or less
    when the last complete full sweep found the server giving fewer a page (a silent cap such as DRF's
    ``max_limit``), so that what a plan costs is counted in the requests it will really take."""
    adapter = adapter_for(src)
    counts = store.state_counts(src.name)
    state = store.source_state(src.name)
    served = state.served_page if state is not None else None
    page_size = min(src.page_size, served) if served else src.page_size
    open_raw = raw_states(src, set(src.open_states), counts)
    settled = sorted({*raw_states(src, set(src.states.values()), counts), *counts} - set(open_raw))
    partition = partition_of(src)
    by = partition.by if partition is not None else "created"
    open_rows = {
        key: plan.Row(raw, key if by == "key" else created, created)
        for key, raw, created in store.order_rows(src.name, states=open_raw)
    }
    floor = min((r.created for r in open_rows.values() if r.created), default=None)
    return plan.Knowledge(
        page_size=page_size,
        max_pages=src.max_pages,
        first_cursor=adapter.first_cursor(),
        next_cursor=adapter.next_cursor,
        says_last=adapter.says_last,
        plan_cursors=adapter.plan,
        open_states=tuple(open_raw),
        settled_states=tuple(settled),
        stored_counts=counts,
        open_rows=open_rows,
        recent=store.state_counts(src.name, created_since=floor) if floor is not None else {},
        newest=store.newest_created(src.name),
        partition=partition,
        caps=caps,
        full_pages=math.ceil(sum(counts.values()) / page_size) + 1,
        jump=_jump(adapter.first_cursor(), adapter.next_cursor),
    )


def _jump(first: int, next_cursor: Callable[[int, Page], int | None]) -> Callable[[int], int] | None:
    """The cursor of a one-order page at an offset, when the cursor after a one-order page is one on (an offset,
    or a page number at one order a page); None for paging that cannot jump."""
    if next_cursor(first, Page(orders=(), skipped=1)) != first + 1:
        return None
    return lambda offset: first + offset


def answerer(store: Store, src: Source) -> Local:
    """The answers to a plan's questions about the stored orders of ``src``."""
    partition = partition_of(src)
    by = partition.by if partition is not None else "created"

    def rows(found: Sequence[tuple[str, str, str | None]]) -> dict[str, plan.Row]:
        return {key: plan.Row(raw, key if by == "key" else created, created) for key, raw, created in found}

    def answer(ask: plan.LocalCount | plan.LocalRows | plan.LocalValues) -> plan.Answer:
        name = src.name
        if isinstance(ask, plan.LocalCount):
            if ask.substring and ask.part.lo is not None:
                return store.count_orders(name, state=ask.state, key_holds=ask.part.lo)
            return store.count_orders(name, state=ask.state, by=by, lo=ask.part.lo, hi=ask.part.hi)
        if isinstance(ask, plan.LocalRows):
            if ask.keys:
                return rows(store.order_rows(name, keys=ask.keys))
            part = ask.part or Part()
            states = [ask.state] if ask.state is not None else None
            return rows(store.order_rows(name, states=states, by=by, lo=part.lo, hi=part.hi))
        return store.partition_values(name, state=ask.state, by=by, lo=ask.part.lo, hi=ask.part.hi)

    def answers(asks: Sequence[plan.LocalCount | plan.LocalRows | plan.LocalValues]) -> list[plan.Answer]:
        return [answer(ask) for ask in asks]

    return answers

"""What an incremental poll asks, as a pure plan: the next questions follow from what the snapshot holds and what
the server answered, until the snapshot's picture of the source is proven to match the server's own counts, or
the difference is found. Pure: no I/O, no clock; ``Plan`` is a generator that yields a batch of ``Ask``\\s, is sent
their answers (in the same order), and returns a ``Verdict``. ``reconcile.py`` runs it over HTTP and the store.

The plan of one poll:

1. **Counts.** The newest page of the whole list (it carries the total) and one ``per_page=1`` answer per raw state
   (its count; its one item shows whether the server filtered by that state; an open state's comes with its list's
   first page, which step 2 starts from). One state per request: servers
   read multi-valued filters in incompatible ways. When these say an incremental poll would cost as much as a full
   sweep, or cannot be trusted (the server ignores the state filter, the counts are not numbers), the verdict is:
   sweep everything now.
2. **New and open orders.** Newest pages down to the first page that ends with a known order (only when the server
   is proven to sort newest first), and every order in an open state, listed state by state. Known open orders
   missing from those lists *left* the open set: a few are read from the detail endpoint (once it has returned the
   right order for a key it was asked for), more are looked for in the settled states' lists, newest first, the
   state whose count rose most first, down to the oldest of them or until all are found.
3. **Reconciliation.** Each settled state's count, and the total, against the snapshot with everything seen so far
   applied. A state whose count differs is *located*, a state that gained orders first (its listings show them in
   their new state): the list is cut into parts the server counts (creation-time ranges on Ace, trade-number
   prefixes on Lsky: ``sources.Partition``), parts whose counts agree are left alone, and small parts that differ
   are listed and compared order by order. A small part is counted with its first page (then its count is its
   listing, compared even when the count agrees); a larger one with its order at an offset halfway down, which
   says on which side of it the difference lies — only an order to count in, never evidence. An order listed
   locally in a part but not by the server is read from the detail endpoint, or the part is listed in every state;
   only a 404 from a proven detail endpoint, or a complete listing of the part it must be in, proves it gone.

Every answer is checked against what was asked: an order in another state than the filter asked for, a part's
orders outside it, a child part counted above its parent, a page out of order — each is learned (``Verdict.learned``)
and the plan falls back to one that does not need what failed. When the requests spent would pass what a full sweep
costs, the verdict is again: sweep everything now.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from orderwatch.core.model import Order, Page
from orderwatch.sources import Part, Partition

DETAIL_MAX: Final = 20  # orders read from the detail endpoint one by one before a list is cheaper
LEAF_PAGES: Final = 2  # a part whose orders fit in this many pages is listed rather than cut further
LEAF_CUT: Final = 0.5  # …or cost less than this share of counting each of its children
TRY_SHARE: Final = 0.5  # an incremental poll is tried when its first steps cost at most this share of a sweep
CHASE_PAGES: Final = 8  # a part listed in one state is listed in every state, to place its missing orders, up to this
SEARCH_WORD_EXACT: Final = 10  # a search word this long is taken as matching its prefix only (a mid-word match of
# ten digits of a time is one chance in many millions per order)
Capability = Literal["state_filter", "sort", "counts", "partition", "detail", "substring"]
CAPABILITIES: Final[tuple[Capability, ...]] = ("state_filter", "sort", "counts", "partition", "detail", "substring")


# ---------------------------------------------------------------------------------------------- questions, answers


@dataclass(frozen=True, slots=True)
class List:
    """One page of the list: only raw ``state`` (None: all) in ``part`` (None: the whole list), at ``cursor``,
    ``size`` orders (a size of 1 asks for a count)."""

    state: str | None
    part: Part | None
    cursor: int
    size: int


@dataclass(frozen=True, slots=True)
class Detail:
    """One order from the detail endpoint."""

    key: str


@dataclass(frozen=True, slots=True)
class LocalCount:
    """How many stored orders are in raw ``state`` (None: any) with a partition value in ``part`` — or, with
    ``substring``, whose key holds ``part.lo`` anywhere (as a server's substring search counts them)."""

    state: str | None
    part: Part
    substring: bool = False


@dataclass(frozen=True, slots=True)
class LocalRows:
    """The stored orders in raw ``state`` (None: any) in ``part``, or those among ``keys``."""

    state: str | None = None
    part: Part | None = None
    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LocalValues:
    """The sorted partition values of the stored orders in raw ``state`` (None: any) in ``part``."""

    state: str | None
    part: Part


Ask: TypeAlias = List | Detail | LocalCount | LocalRows | LocalValues


@dataclass(frozen=True, slots=True)
class Row:
    """What the snapshot holds of one order: its raw state, partition value and creation time."""

    raw_state: str
    value: str | None
    created: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A remote question that could not be answered (after retries): why."""

    reason: str


Answer: TypeAlias = Page | Order | Failed | int | Mapping[str, Row] | Sequence[str] | None
Plan: TypeAlias = Generator[list[Ask], list[Answer], "Verdict"]


# ---------------------------------------------------------------------------------------------- what is known


@dataclass(frozen=True, slots=True)
class Knowledge:
    """What the plan starts from: the source's paging, what the server has proven, and what the snapshot holds."""

    page_size: int
    max_pages: int
    first_cursor: int
    next_cursor: Callable[[int, Page], int | None]
    says_last: Callable[[int, Page], bool]
    plan_cursors: Callable[[Page, int, int], list[int]]  # (first page, its cursor, at most n) -> the rest
    open_states: tuple[str, ...]  # raw states an order can still leave
    settled_states: tuple[str, ...]  # the other raw states the server knows or the snapshot holds
    stored_counts: Mapping[str, int]  # raw state -> stored orders
    open_rows: Mapping[str, Row]  # the stored orders in open states
    recent: Mapping[str, int]  # settled raw state -> stored orders created since the oldest open one
    newest: str | None  # the latest creation time stored
    partition: Partition | None  # how the list can be counted part by part (None: it cannot)
    caps: Mapping[Capability, bool | None]  # what the server has proven (True), disproven (False), or not yet
    full_pages: int  # what a full sweep of the stored orders costs in requests
    jump: Callable[[int], int] | None = None  # the cursor of a one-order page at an offset (None: cannot jump)

    @property
    def stored_total(self) -> int:
        """How many orders the snapshot holds."""
        return sum(self.stored_counts.values())


@dataclass(slots=True)
class Verdict:
    """What an incremental poll found. ``complete``: the snapshot with ``seen`` and ``gone`` applied matches every
    count the server gave. ``full_now``: why a full sweep must run instead, this poll (nothing else here is then
    final). ``learned``: capabilities proven (True) or disproven (False), with a note for the log."""

    seen: dict[str, Order] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    complete: bool = False
    reasons: list[str] = field(default_factory=list)
    full_now: str | None = None
    error: str | None = None  # not even the first question could be answered
    learned: dict[Capability, tuple[bool, str]] = field(default_factory=dict)
    asked: int = 0  # remote questions asked

    @property
    def reason(self) -> str | None:
        """Why the poll is not complete, on one line."""
        return self.full_now or self.error or ("; ".join(self.reasons) or None)


# ---------------------------------------------------------------------------------------------- running sub-plans


def together(
    plans: Sequence[Generator[list[Ask], list[Answer], object]],
) -> Generator[list[Ask], list[Answer], list[object]]:
    """Run sub-plans side by side: their questions of each round go out as one batch; returns their results."""
    results: list[object] = [None] * len(plans)
    pending: dict[int, list[Ask]] = {}
    for i, sub in enumerate(plans):
        try:
            pending[i] = next(sub)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        order = sorted(pending)
        batch = [ask for i in order for ask in pending[i]]
        answers = yield batch
        at = 0
        for i in order:
            n = len(pending[i])
            mine, at = answers[at : at + n], at + n
            try:
                pending[i] = plans[i].send(mine)
            except StopIteration as stop:
                results[i] = stop.value
                del pending[i]
    return results


# ---------------------------------------------------------------------------------------------- the plan


class _Poll:
    """One incremental poll's state: what the plan has seen, learned and spent."""

    def __init__(self, known: Knowledge) -> None:
        self.k = known
        self.v = Verdict()
        self.stored: dict[str, Row | None] = dict(known.open_rows)  # stored rows looked up so far (None: absent)
        self.caps: dict[Capability, bool | None] = dict(known.caps)
        self.budget = max(1, known.full_pages)
        self.counted: dict[tuple[str | None, Part], int] = {}  # the server's counts of parts, asked once
        self.heads: dict[tuple[str | None, Part | None], Page] = {}  # first pages that came with a count
        # a part's stored rows and the offset a count asked its order at, and the order the server listed there
        self.rows: dict[tuple[str | None, Part], Mapping[str, Row]] = {}
        self.offsets: dict[tuple[str | None, Part], tuple[int, str | None]] = {}  # and the value there
        self.hints: dict[tuple[str | None, Part], Order] = {}
        self.away: dict[str, set[str]] = {}  # orders known not to be in these raw states any more (where: not yet)

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def learn(self, cap: Capability, ok: bool, note: str) -> None:
        """Record what a server answer proved, once per capability."""
        if self.caps.get(cap) is not ok:
            self.caps[cap] = ok
            self.v.learned[cap] = (ok, note)

    def value(self, order: Order) -> str | None:
        """An order's partition value."""
        partition = self.k.partition
        if partition is None:
            return None
        return order.key if partition.by == "key" else order.created

    def current(self, key: str) -> Row | Literal[False] | None:
        """What the poll knows of an order now: its row as seen, None when gone, False when not seen this poll."""
        if key in self.v.gone:
            return None
        order = self.v.seen.get(key)
        if order is None:
            return False
        return Row(order.raw_state, self.value(order), order.created)

    def see(self, orders: Iterable[Order]) -> list[str]:
        """Note orders seen; returns the keys whose stored row is not looked up yet."""
        unknown = []
        for order in orders:
            self.v.seen[order.key] = order
            self.v.gone.discard(order.key)
            if order.key not in self.stored:
                unknown.append(order.key)
        return unknown

    def lookup(self, keys: Sequence[str]) -> Generator[list[Ask], list[Answer], None]:
        """Look up the stored rows of ``keys`` (a local question)."""
        wanted = tuple(dict.fromkeys(k for k in keys if k not in self.stored))
        if not wanted:
            return
        (rows,) = yield [LocalRows(keys=wanted)]
        assert isinstance(rows, Mapping)
        for key in wanted:
            self.stored[key] = rows.get(key)

    def expected(self, state: str | None, part: Part, stored_count: int) -> int:
        """How many orders in ``state`` and ``part`` the server should count, from the stored count with this
        poll's sightings applied."""

        anywhere = self.substring(part)

        def inside(row: Row | None, key: str) -> bool:
            if row is None or (state is not None and row.raw_state != state):
                return False
            return part.lo in key if anywhere and part.lo is not None else part.contains(row.value)

        count = stored_count
        for key in {*self.v.seen, *self.v.gone, *self.away}:
            now = self.current(key)
            before = self.stored.get(key)
            if now is False:  # not seen again: only known to have left some states
                if state is not None and state in self.away.get(key, ()):
                    count -= int(inside(before, key))
            elif now != before:
                count += int(inside(now, key)) - int(inside(before, key))
        return count

    def values(self, state: str | None, part: Part, stored: Sequence[str]) -> list[str]:
        """The sorted partition values in ``state`` and ``part``: the stored ones with this poll's sightings."""
        found = set(stored)
        for key in {*self.v.seen, *self.v.gone}:
            now, before = self.current(key), self.stored.get(key)
            if now is False or now == before:
                continue
            for row, add in ((before, False), (now, True)):
                if row is None or row.value is None or not part.contains(row.value):
                    continue
                if state is None or row.raw_state == state:
                    (found.add if add else found.discard)(row.value)
        return sorted(found)

    def substring(self, part: Part) -> bool:
        """True when the server's count of ``part`` is a substring search that can count orders outside it."""
        partition = self.k.partition
        return (
            partition is not None
            and not partition.exact
            and self.caps.get("substring") is not False
            and part.lo is not None
            and len(part.lo) < SEARCH_WORD_EXACT
        )

    def remote(self, asks: Sequence[Ask]) -> None:
        self.v.asked += sum(isinstance(a, (List, Detail)) for a in asks)

    def over_budget(self, more: int = 0) -> bool:
        """True when ``more`` requests on top of those asked would pass a full sweep's cost."""
        return self.v.asked + more > self.budget

    # -- listing -----------------------------------------------------------------------------------------------

    def listing(
        self, state: str | None, part: Part | None, *, stop: Callable[[Page], bool] | None = None
    ) -> Generator[list[Ask], list[Answer], tuple[list[Order], int | None, str | None]]:
        """Every order of one filtered list (or down to ``stop``): (orders, the total the server gave — None when
        its pages gave different totals, as when an order left or joined the list while it was paged, which can
        pull a row past a page unseen —, why the listing is incomplete or None). Checks every order against the
        filter."""
        k = self.k
        size = k.page_size
        cursor = k.first_cursor
        orders: list[Order] = []
        totals: set[int] = set()
        first = yield from self.first_page(state, part, stop is None)
        if isinstance(first, Failed):
            return orders, None, first.reason
        assert isinstance(first, Page)
        pages: list[tuple[int, Page]] = [(cursor, first)]
        planned = k.plan_cursors(first, cursor, k.max_pages - 1) if stop is None else []
        nxt = k.next_cursor(cursor, first)
        if planned and nxt is not None and planned[0] == nxt and not k.says_last(cursor, first):
            asks: list[Ask] = [List(state, part, c, size) for c in planned]
            self.remote(asks)
            answers = yield asks
            for c, answer in zip(planned, answers, strict=True):
                if isinstance(answer, Failed):
                    return [o for _, p in pages for o in p.orders], None, answer.reason
                assert isinstance(answer, Page)
                pages.append((c, answer))
        for i, (c, page) in enumerate(pages):
            bad = self.check_page(state, part, page)
            if bad is not None:
                return [], None, bad
            orders.extend(page.orders)
            if page.total is not None:
                totals.add(page.total)
            nxt = k.next_cursor(c, page)
            if nxt is None or k.says_last(c, page) or (stop is not None and stop(page)):
                return orders, _steady(totals), None
            if i + 1 < len(pages) and pages[i + 1][0] != nxt:
                pages = pages[: i + 1]  # a page ended elsewhere than planned: go on from where it really ended
                break
        nxt = k.next_cursor(pages[-1][0], pages[-1][1])
        count = len(pages)
        while nxt is not None:
            if count >= k.max_pages:
                return orders, _steady(totals), f"a listing stopped after max_pages ({k.max_pages}) pages"
            asks = [List(state, part, nxt, size)]
            self.remote(asks)
            (answer,) = yield asks
            if isinstance(answer, Failed):
                return orders, _steady(totals), answer.reason
            assert isinstance(answer, Page)
            page = answer
            count += 1
            bad = self.check_page(state, part, page)
            if bad is not None:
                return [], None, bad
            orders.extend(page.orders)
            if page.total is not None:
                totals.add(page.total)
            if k.says_last(nxt, page) or (stop is not None and stop(page)):
                break
            nxt = k.next_cursor(nxt, page)
        return orders, _steady(totals), None

    def first_page(
        self, state: str | None, part: Part | None, whole: bool
    ) -> Generator[list[Ask], list[Answer], Answer]:
        """The first page of a list: the one that came with the part's count, when the whole list is wanted."""
        head = self.heads.pop((state, part), None) if whole else None
        if head is not None:
            return head
        asks: list[Ask] = [List(state, part, self.k.first_cursor, self.k.page_size)]
        self.remote(asks)
        (first,) = yield asks
        return first

    def check_page(self, state: str | None, part: Part | None, page: Page) -> str | None:
        """Why a filtered page shows that the server did not filter as asked (learned), or None."""
        if state is not None:
            other = next((o for o in page.orders if o.raw_state != state), None)
            if other is not None:
                note = f"asked for state {state!r}, the server listed order {other.key} in {other.raw_state!r}"
                self.learn("state_filter", False, note)
                return note
            if page.orders:
                self.learn("state_filter", True, f"lists only {state!r} orders when asked")
        if part is not None and self.k.partition is not None:
            outside = next((o for o in page.orders if not self.k.partition.admits(part, self.value(o))), None)
            if outside is not None:
                note = f"asked for part {part}, the server listed order {outside.key} outside it"
                self.learn("partition", False, note)
                return note
        if page.newest_first is False:
            self.learn("sort", False, "a page asked for newest first was not in that order")
        return None

    def count(self, answer: Answer, state: str | None) -> int | None:
        """The total of a ``per_page=1`` answer, checked: None when it is no usable count (learned)."""
        if isinstance(answer, Failed) or not isinstance(answer, Page):
            return None
        total = answer.total
        if total is None or total < 0 or total < answer.size:
            self.learn("counts", False, f"a count for state {state!r} came back as {total!r}")
            return None
        if state is not None and answer.orders and answer.orders[0].raw_state != state:
            order = answer.orders[0]
            self.learn(
                "state_filter",
                False,
                f"asked for state {state!r}, the server listed order {order.key} in {order.raw_state!r}",
            )
            return None
        return total


def worth_trying(known: Knowledge) -> str | None:
    """None when an incremental poll is worth trying; else why a full sweep is the better plan (decided before
    asking anything, from what the snapshot holds: on a small account a full sweep costs fewer requests)."""
    if known.caps.get("state_filter") is False:
        return "the server ignores or misreads the state filter (learned earlier)"
    if known.caps.get("counts") is False:
        return "the server's counts are no evidence (learned earlier)"
    first = 1 + len(known.open_states) + len(known.settled_states)
    open_pages = sum(math.ceil(known.stored_counts.get(s, 0) / known.page_size) for s in known.open_states)
    # what the plan spends before it knows whether it can finish cheaply must be small beside a sweep: when it
    # turns into a full sweep anyway, those requests come on top
    if first + open_pages > known.full_pages * TRY_SHARE:
        return f"a full sweep (~{known.full_pages} requests) costs too little for an incremental poll to pay"
    return None


def incremental(known: Knowledge) -> Plan:
    """The plan of one incremental poll (see the module docstring)."""
    poll = _Poll(known)
    v = poll.v
    k = known
    if (why := worth_trying(known)) is not None:
        v.full_now = why
        return v

    # 1. the newest page and a count per raw state
    counted = yield from _counts(poll)
    if counted is None:
        return v
    head, counts, total = counted

    # 2. new orders (newest pages down to known ones) and every open order, state by state
    newest = yield from _newest(poll, head)
    if v.full_now:
        return v
    listings = yield from together([poll.listing(s, None) for s in k.open_states])
    for state, result in zip(k.open_states, listings, strict=True):
        assert isinstance(result, tuple)
        orders, _, why = result
        if why is not None:
            if poll.caps.get("state_filter") is False:
                v.full_now = why
            else:
                v.reasons.append(f"open orders in {state!r}: {why}")
        yield from poll.lookup(poll.see(orders))
    if v.reasons or v.full_now:
        return v
    if newest is not None:
        v.reasons.append(newest)
    left = [key for key in k.open_rows if key not in v.seen and key not in v.gone]
    yield from _find_left(poll, left, counts)
    if v.full_now:
        return v

    # 3. reconcile every settled state and the total, locating what differs
    yield from _reconcile(poll, counts, total)
    return v


def _steady(totals: set[int]) -> int | None:
    """The one total a listing's pages gave, or None when they gave none or moved."""
    return next(iter(totals)) if len(totals) == 1 else None


def _counts(poll: _Poll) -> Generator[list[Ask], list[Answer], tuple[Page, dict[str, int], int] | None]:
    """The newest page and every raw state's count, checked: (the page, the counts, the total), or None with the
    verdict saying why the plan cannot go on."""
    k, v = poll.k, poll.v
    states = (*k.open_states, *k.settled_states)
    asks: list[Ask] = [List(None, None, k.first_cursor, k.page_size)]
    # an open state is listed whole next: its count comes with its first page
    asks += [List(s, None, k.first_cursor, k.page_size if s in k.open_states else 1) for s in states]
    poll.remote(asks)
    head, *counted = yield asks
    if isinstance(head, Failed):
        v.error = head.reason
        return None
    assert isinstance(head, Page)
    total = head.total
    if total is None or total < 0 or total < head.size:
        poll.learn("counts", False, f"the list's count came back as {total!r}")
        v.full_now = "the server's count of its orders is no number to reconcile against"
        return None
    counts: dict[str, int] = {}
    for state, answer in zip(states, counted, strict=True):
        if isinstance(answer, Failed):
            v.full_now = f"a count failed: {answer.reason}"
            return None
        n = poll.count(answer, state)
        if n is None:
            v.full_now = "the server's per-state counts cannot be trusted"
            return None
        counts[state] = n
        if state in k.open_states and isinstance(answer, Page):
            poll.heads[state, None] = answer
    if any(n > total for n in counts.values()) or sum(counts.values()) > total:
        poll.learn("state_filter", False, f"per-state counts add up to {sum(counts.values())} of {total} orders")
        v.full_now = "the server's per-state counts do not add up: it ignores or misreads the state filter"
        return None
    if head.newest_first is False:
        poll.learn("sort", False, "the newest page was not in newest-first order")
    elif head.newest_first and poll.caps.get("sort") is None:
        poll.learn("sort", True, "lists newest first when asked")
    poll.budget = math.ceil(total / k.page_size) + 1
    estimate = _estimate(k, counts, total)
    if v.asked + estimate >= poll.budget:
        v.full_now = f"a full sweep ({poll.budget} requests) costs no more than an incremental poll (~{estimate})"
        return None
    return head, counts, total


def _estimate(k: Knowledge, counts: Mapping[str, int], total: int) -> int:
    """Requests an incremental poll will likely still need, from the counts just given: the open lists, the new
    orders' pages, finding the open orders that settled, and locating the other differences part by part."""
    pages = sum(math.ceil(counts[s] / k.page_size) for s in k.open_states)
    new = max(0, total - k.stored_total)
    head = 1 + math.ceil(new / k.page_size)
    left = max(0, sum(k.stored_counts.get(s, 0) for s in k.open_states) - sum(counts[s] for s in k.open_states) + new)
    deltas = {s: counts.get(s, 0) - k.stored_counts.get(s, 0) for s in k.settled_states}
    if left <= DETAIL_MAX:
        finding = left
    else:  # the settled states' lists down to the oldest open order
        finding = sum(math.ceil((k.recent.get(s, 0) + max(0, deltas[s])) / k.page_size) + 1 for s in deltas)
    deltas = _explained(deltas, left)
    moved = (sum(abs(d) for d in deltas.values()) + abs(total - k.stored_total - new)) // 2 + 1
    if not any(deltas.values()):
        return head + pages + finding
    if k.partition is None:
        return pages + sum(math.ceil(counts.get(s, 0) / k.page_size) for s, d in deltas.items() if d)
    smallest = min(counts.get(s, 0) for s, d in deltas.items() if d)
    fanout = k.partition.fanout
    levels = max(0.0, math.log(max(1.0, smallest / (k.page_size * LEAF_PAGES)), fanout))
    per_change = levels * (fanout - 1) + LEAF_PAGES
    return head + pages + finding + math.ceil(moved * per_change)


def _explained(deltas: Mapping[str, int], left: int) -> dict[str, int]:
    """The settled states' differences not explained by ``left`` open orders settling into them."""
    rest = dict(deltas)
    for state in sorted(rest, key=lambda s: -rest[s]):
        take = min(left, max(0, rest[state]))
        rest[state] -= take
        left -= take
    return rest


def _newest(poll: _Poll, head: Page) -> Generator[list[Ask], list[Answer], str | None]:
    """New orders: the newest pages down to the first page that ends with a known order (when the server sorts
    newest first). Returns why new orders may remain unseen, or None."""
    k = poll.k
    page, cursor, pages = head, k.first_cursor, 1
    while True:
        yield from poll.lookup(poll.see(page.orders))
        if poll.caps.get("sort") is not True:
            return (yield from _newer_than_stored(poll))
        # below a known order, a new one would be older than it: back-dated, which the total's reconciliation finds
        if not page.orders or poll.stored.get(page.orders[-1].key) is not None or k.says_last(cursor, page):
            return None
        nxt = k.next_cursor(cursor, page)
        if nxt is None:
            return None
        if pages >= k.max_pages or poll.over_budget(1):
            return "the newest pages were not all read"
        asks: list[Ask] = [List(None, None, nxt, k.page_size)]
        poll.remote(asks)
        (answer,) = yield asks
        if isinstance(answer, Failed):
            return f"newest pages: {answer.reason}"
        assert isinstance(answer, Page)
        if answer.newest_first is False:
            poll.learn("sort", False, "a page asked for newest first was not in that order")
        page, cursor, pages = answer, nxt, pages + 1


def _newer_than_stored(poll: _Poll) -> Generator[list[Ask], list[Answer], str | None]:
    """New orders from a server that does not sort as asked: the part of the list newer than every stored order,
    when the partition can say so; else the verdict is a full sweep (counts alone can miss a new order whose
    count a deletion cancels)."""
    k, v = poll.k, poll.v
    above = k.partition.above(k.newest) if k.partition is not None and k.newest is not None else None
    if above is None:
        v.full_now = "the server does not list newest first, and new orders can then be found only by a full sweep"
        return None
    orders, _, why = yield from poll.listing(None, above)
    if why is not None:
        return f"new orders: {why}"
    yield from poll.lookup(poll.see(orders))
    return None


def _find_left(poll: _Poll, left: Sequence[str], counts: Mapping[str, int]) -> Generator[list[Ask], list[Answer], None]:
    """Where known open orders that left the open set went: the detail endpoint for a few (once proven), else the
    settled states' lists, newest first, down to the oldest of them (when the server sorts) or until all are
    found, the state whose count rose most first."""
    k = poll.k
    if not left:
        return
    if len(left) <= DETAIL_MAX and poll.caps.get("detail") is not False:
        if poll.caps.get("detail") is None:
            yield from _probe_detail(poll)
        if poll.caps.get("detail"):
            yield from _details(poll, left)
            return
    if poll.caps.get("sort") is not True:
        return  # the reconciliation of the settled states finds them
    floors = [r.created for key in left if (r := k.open_rows.get(key)) is not None and r.created is not None]
    if len(floors) < len(left):
        return
    floor = min(floors)

    unfound = set(left)

    def enough(page: Page) -> bool:
        unfound.difference_update(o.key for o in page.orders)
        return not unfound or (page.oldest is not None and page.oldest < floor)

    if poll.over_budget(len(k.settled_states) * (1 + len(left) // k.page_size)):
        return
    rose = sorted(k.settled_states, key=lambda s: k.stored_counts.get(s, 0) - counts.get(s, 0))
    for state in rose:
        if not unfound:
            return
        orders, _, why = yield from poll.listing(state, None, stop=enough)
        if why is None:
            yield from poll.lookup(poll.see(orders))


def _probe_detail(poll: _Poll) -> Generator[list[Ask], list[Answer], None]:
    """Prove the detail endpoint on an order just listed: it must answer that very order."""
    known = next(iter(poll.v.seen.values()), None)
    if known is None:
        return
    asks: list[Ask] = [Detail(known.key)]
    poll.remote(asks)
    (answer,) = yield asks
    if isinstance(answer, Failed):
        return
    if answer is None:
        poll.learn("detail", False, f"the detail endpoint answered 404 for order {known.key}, which the list has")
    elif isinstance(answer, Order) and answer.key != known.key:
        poll.learn("detail", False, f"the detail endpoint answered order {answer.key} when asked for {known.key}")
    elif isinstance(answer, Order):
        poll.learn("detail", True, "answers the order asked for")


def _details(poll: _Poll, keys: Sequence[str]) -> Generator[list[Ask], list[Answer], None]:
    """Read orders from the (proven) detail endpoint: each is seen, gone (404), or left unsettled."""
    v = poll.v
    asks: list[Ask] = [Detail(key) for key in keys]
    poll.remote(asks)
    answers = yield asks
    for key, answer in zip(keys, answers, strict=True):
        if isinstance(answer, Failed):
            v.reasons.append(f"order {key}: {answer.reason}")
        elif answer is None:
            v.gone.add(key)
            v.seen.pop(key, None)
        elif isinstance(answer, Order) and answer.key == key:
            poll.see([answer])
        elif isinstance(answer, Order):
            poll.learn("detail", False, f"the detail endpoint answered order {answer.key} when asked for {key}")
            v.reasons.append(f"order {key}: the detail endpoint answered another order")
    yield from poll.lookup([k for k in keys if k in v.seen])


def _reconcile(poll: _Poll, counts: Mapping[str, int], total: int) -> Generator[list[Ask], list[Answer], None]:
    """Compare each settled state's count and the total with the snapshot (sightings applied), and locate every
    difference; the verdict is complete when none is left."""
    k, v = poll.k, poll.v
    root = Part()
    server: dict[str | None, int] = {s: counts[s] for s in k.settled_states}
    server[None] = total
    stuck: set[str | None] = set()
    while True:
        deltas: dict[str | None, int] = {}
        for dim, n in server.items():
            stored = k.stored_total if dim is None else k.stored_counts.get(dim, 0)
            diff = n - poll.expected(dim, root, stored)
            if diff:
                deltas[dim] = diff
        open_moved = [s for s in k.open_states if counts[s] != _now_in(poll, s)]
        todo = [dim for dim in deltas if dim not in stuck]
        if not todo:
            if deltas:
                shown = ", ".join(f"{'total' if d is None else d} {n:+d}" for d, n in deltas.items())
                v.reasons.append(f"counts still differ from the snapshot ({shown})")
            elif open_moved:
                v.reasons.append(f"orders moved while the poll ran ({', '.join(open_moved)})")
            else:
                v.complete = not v.reasons
            return
        # a state that gained orders first: its listings show them in their new state, which explains the losses
        # of the states they left without reading each from the detail endpoint; then the larger difference, the
        # state with the fewest orders (the cheapest to locate in); the total (deletions, back-dated new orders) last
        dim = min(todo, key=lambda d: (d is None, deltas[d] < 0, -abs(deltas[d]), server[d]))
        stored = k.stored_total if dim is None else k.stored_counts.get(dim, 0)
        for thorough in (False, True):
            yield from _locate(poll, dim, server[dim], thorough=thorough)
            if v.full_now:
                return
            if server[dim] - poll.expected(dim, root, stored) != deltas[dim]:
                break
        else:
            stuck.add(dim)  # locating found nothing more in it: leave it to the others, or say it differs


def _now_in(poll: _Poll, state: str) -> int:
    """How many orders the poll has seen in an open ``state``."""
    return sum(1 for o in poll.v.seen.values() if o.raw_state == state)


def _locate(
    poll: _Poll, state: str | None, count: int, *, thorough: bool = False
) -> Generator[list[Ask], list[Answer], None]:
    """Find the orders behind a difference in ``state`` (None: the total): cut the list into parts the server
    counts, descend into the parts whose counts differ, list the small ones. ``thorough``: count every child of a
    cut part, not only until the part's difference is explained (differences that cancel out are then found)."""
    k, v = poll.k, poll.v
    partition = k.partition
    root = Part()
    if partition is None or poll.caps.get("partition") is False:
        if state is None or poll.over_budget(math.ceil(count / k.page_size)):
            v.full_now = "a difference in the counts that only a full sweep can locate"
            return
        yield from _compare(poll, state, root, count)  # the whole state's list
        return
    stored = k.stored_total if state is None else k.stored_counts.get(state, 0)
    if not partition.exact and poll.caps.get("substring") is None:
        yield from _probe_search(poll)
    frontier: list[tuple[Part, int, int]] = [(root, count, count - poll.expected(state, root, stored))]
    while frontier and not v.full_now:
        values = yield [LocalValues(state, part) for part, _, _ in frontier]
        listed: list[tuple[Part, int, int]] = []
        cuts: list[tuple[Part, int, int, list[Part], bool]] = []
        for (part, n, diff), stored_values in zip(frontier, values, strict=True):
            assert isinstance(stored_values, Sequence)
            known = poll.values(state, part, stored_values)
            split = partition.split(part, known)
            children = split if thorough else (yield from _past_lone(poll, part, diff, split, known))
            # listing a part costs its pages; cutting it costs up to a count per child, and then the children
            if children and math.ceil(n / k.page_size) > max(LEAF_PAGES, LEAF_CUT * (len(children) - 1)):
                cuts.append((part, n, diff, children, children == split))
            else:
                listed.append((part, n, diff))
        frontier = []
        if listed:
            if poll.over_budget(sum(_listing_cost(poll, state, part, n) for part, n, _ in listed)):
                v.full_now = "locating the differences would cost more than a full sweep"
                return
            if state is not None and poll.caps.get("detail") is None and any(d < 0 for *_, d in listed):
                # orders that left a part are then read one by one: one request, against listing each such
                # part in every state
                yield from _probe_detail(poll)
            yield from together([_compare(poll, state, part, n) for part, n, _ in listed])
        if cuts:
            frontier = yield from _cut(poll, state, cuts, thorough=thorough)


def _listing_cost(poll: _Poll, state: str | None, part: Part, count: int) -> int:
    """Requests listing a part of ``count`` orders will take, one more to place what it misses; its first page
    may have come with its count."""
    return math.ceil(count / poll.k.page_size) + 1 - int((state, part) in poll.heads)


def _past_lone(
    poll: _Poll, part: Part, diff: int, children: list[Part], known: Sequence[str]
) -> Generator[list[Ask], list[Answer], list[Part]]:
    """The children to count: while all of ``part``'s orders lie in one child, that child's children (its count
    is the part's but for a substring search's strays; a loss can only be where orders were, a gain only where
    orders of any state were)."""
    partition = poll.k.partition
    assert partition is not None
    while True:
        holding = [c for c in children if any(c.contains(value) for value in known)]
        if len(holding) != 1 or not (grand := partition.split(holding[0], known)):
            return children
        if diff > 0:
            inside, everything = yield [LocalCount(None, holding[0]), LocalCount(None, part)]
            if inside != everything:
                return children
        children = grand


def _probe_search(poll: _Poll) -> Generator[list[Ask], list[Answer], None]:
    """Whether the server's search matches a word anywhere in a key or only at its start: ask for the count of a
    word from the middle of a stored key, and compare with both readings of the snapshot."""
    k = poll.k
    keys = [key for key in k.open_rows if len(key) >= 19 and key[14:19].isdigit()]
    if not keys:
        return
    word = keys[0][14:19]
    part = Part(word, word[:-1] + chr(ord(word[-1]) + 1))
    asks: list[Ask] = [List(None, part, k.first_cursor, 1)]
    poll.remote(asks)
    server, anywhere, prefix = yield [*asks, LocalCount(None, part, True), LocalCount(None, part, False)]
    n = poll.count(server, None)
    if n is None or anywhere == prefix:
        return
    if n == anywhere:
        poll.learn("substring", True, f"its search matches a word anywhere in a key ({word!r}: {n} orders)")
    elif n == prefix:
        poll.learn("substring", False, f"its search matches a word at the start of a key ({word!r}: {n} orders)")


CUT_BATCH: Final = 3  # children of one part counted per round
HEAD_PAGES: Final = 2  # a child expected to fit in this many pages is counted with its first page
HINT_MAX: Final = 50_000  # a larger child is counted without the order halfway down (its stored rows are many)


@dataclass(slots=True)
class _Cut:
    """One part being cut: its server count, the difference still to explain, and the children not yet counted."""

    count: int
    unexplained: int
    left: list[Part]
    exact: bool  # its children's counts add up to its own (no search may count an order twice)
    counted: int = 0
    other: _Cut | None = None  # the other side of the same part, when its children were split in two


def _cut(
    poll: _Poll, state: str | None, cuts: Sequence[tuple[Part, int, int, list[Part], bool]], *, thorough: bool
) -> Generator[list[Ask], list[Answer], list[tuple[Part, int, int]]]:
    """Count the children of each cut part until they explain the part's difference — the largest first, a few at
    a time; when the partition's counts are exact, the last child's count is the parent's rest — and return those
    whose counts differ from the snapshot's, with their counts and differences (``thorough``: count them all)."""
    v = poll.v
    children = [child for *_, kids, _ in cuts for child in kids]
    answers = yield [
        *(LocalCount(state, child, poll.substring(child)) for child in children),
        *(LocalCount(None, child) for child in children),
    ]
    expected: dict[Part, int] = {}
    anything: set[Part] = {c for c in children if any(c.contains(poll.value(o)) for o in poll.v.seen.values())}
    for i, child in enumerate(children):
        n, held = answers[i], answers[len(children) + i]
        assert isinstance(n, int) and isinstance(held, int)
        expected[child] = poll.expected(state, child, n)
        if held:
            anything.add(child)
    nodes = [node for cut in cuts for node in _nodes(poll, state, cut, expected)]
    yield from _hint_rows(poll, state, [c for c in children if (state, c) not in poll.counted], expected)
    differing: list[tuple[Part, int, int]] = []

    def found(node: _Cut, child: Part, n: int) -> None:
        node.counted += n
        node.left.remove(child)
        if n != expected[child]:
            differing.append((child, n, n - expected[child]))
            node.unexplained -= n - expected[child]
        elif (head := poll.heads.get((state, child))) is not None and head.size >= n:
            # its count came with all its orders: compared for free, it shows moves that cancel out in its count
            differing.append((child, n, 0))

    while True:
        wanted: list[tuple[_Cut, Part]] = []
        moved = False
        for node in nodes:
            if (node.unexplained == 0 and not thorough) or not node.left:
                continue
            if len(node.left) == 1 and node.exact:
                found(node, node.left[0], node.count - node.counted)
                continue
            picked = _pick(node, expected, anything, thorough=thorough)
            moved |= not picked
            wanted += [(node, child) for child in picked]
        if not wanted:
            if moved:
                continue
            return differing
        asks: list[Ask] = [_count_ask(poll, state, c, expected[c]) for _, c in wanted if (state, c) not in poll.counted]
        if poll.over_budget(len(asks)):
            v.full_now = "locating the differences would cost more than a full sweep"
            return []
        poll.remote(asks)
        answers = yield asks
        asked = iter(answers)
        for node, child in wanted:
            if (state, child) not in poll.counted and not _counted(poll, state, child, next(asked)):
                v.full_now = "a part's count cannot be trusted"
                return []
            n = poll.counted[state, child]
            if n > node.count or (node.exact and node.counted + n > node.count):
                poll.learn(
                    "partition", False, f"the parts of a part count {node.counted + n}, more than its {node.count}"
                )
                v.full_now = "the server's counts of parts do not add up: it ignores or misreads the part filter"
                return []
            found(node, child, n)


def _pick(node: _Cut, expected: Mapping[Part, int], anything: set[Part], *, thorough: bool) -> list[Part]:
    """The children of ``node`` to count next; [] when a side hands what it cannot hold to the other side."""
    if thorough:
        return list(node.left)
    # a difference of d is most likely d orders, in the largest children: ask up to d at a time; a child the
    # snapshot has no orders of the state in cannot have lost any, nor one without orders of any state gained any
    # (but new ones, seen), so they are looked for elsewhere first
    able = [c for c in node.left if c in anything and (node.unexplained > 0 or expected[c] > 0)]
    if not able and node.other is not None:
        # a side's share was read from one order: what its children cannot hold is the other side's
        node.other.unexplained += node.unexplained
        node.unexplained, node.other.other, node.other = 0, None, None
        return []
    able = able or node.left
    return able[: min(CUT_BATCH, abs(node.unexplained), max(1, len(node.left) - int(node.exact)))]


def _nodes(
    poll: _Poll, state: str | None, cut: tuple[Part, int, int, list[Part], bool], expected: Mapping[Part, int]
) -> list[_Cut]:
    """The children of one cut part to count, the likeliest first (see ``_likely``): one node, or two when the
    order halfway down said exactly how much of the difference lies in the newer children (each side is then
    looked into until its own share is explained)."""
    part, n, diff, kids, whole = cut
    likely, above = _likely(poll, state, part, n - diff, diff, kids)
    if above is not None:
        newer, older = (
            _Cut(n, share, sorted((c for c in kids if likely[c] == side), key=lambda c: -expected[c]), False)
            for side, share in ((0, above), (1, diff - above))
        )
        newer.other, older.other = older, newer
        return [newer, older]
    # the children's counts add up to the part's only when no count is a substring search's, and the children
    # are the part's own (not a lone child's)
    exact = whole and not poll.substring(part) and not any(poll.substring(c) for c in kids)
    return [_Cut(n, diff, sorted(kids, key=lambda c: (likely.get(c, 2), -expected[c])), exact)]


def _hint_rows(
    poll: _Poll, state: str | None, children: Sequence[Part], expected: Mapping[Part, int]
) -> Generator[list[Ask], list[Answer], None]:
    """The stored rows of the children that may be cut next, when the server lists newest first: they are counted
    at an order halfway down (``_count_ask``), and their rows tell where a difference lies (``_likely``)."""
    k = poll.k
    if k.jump is None or poll.caps.get("sort") is not True:
        return
    hinted = [c for c in children if HEAD_PAGES * k.page_size < expected[c] <= HINT_MAX]
    rows = (yield [LocalRows(state, c) for c in hinted]) if hinted else []
    for child, found in zip(hinted, rows, strict=True):
        assert isinstance(found, Mapping)
        poll.rows[state, child] = found


def _counted(poll: _Poll, state: str | None, part: Part, answer: Answer) -> bool:
    """Record the count of ``part`` (and the first page or the order halfway down that came with it); False when
    the answer is no usable count."""
    n = poll.count(answer, state)
    if n is None:
        return False
    assert isinstance(answer, Page)
    poll.counted[state, part] = n
    if answer.size > 1:
        poll.heads[state, part] = answer
    elif answer.orders and (state, part) in poll.offsets:
        poll.hints[state, part] = answer.orders[0]
    return True


def _count_ask(poll: _Poll, state: str | None, part: Part, expected: int) -> List:
    """The request that counts ``part``: a part small enough to be listed whole if it differs is counted with its
    first page (the count is then its listing); a larger one, with its order halfway down (where the difference
    lies: see ``_likely``)."""
    k = poll.k
    if expected <= HEAD_PAGES * k.page_size:
        return List(state, part, k.first_cursor, k.page_size)
    rows = poll.rows.get((state, part))
    if rows is None or k.jump is None:
        return List(state, part, k.first_cursor, 1)
    orders = _current(poll, state, part, rows)
    offset = _halfway(poll, part, orders)
    poll.offsets[state, part] = (offset, orders[offset][1] if offset < len(orders) else None)
    return List(state, part, k.jump(offset), 1)


def _halfway(poll: _Poll, part: Part, orders: Sequence[tuple[str, str | None]]) -> int:
    """Where to ask for ``part``'s order: at the start of the child (as ``part`` will be cut) nearest halfway down
    its ``orders`` (creation time and partition value, newest first), so that the order found there tells the
    newer children from the others; and at an order created alone in its instant, so that one order more or fewer
    above it moves the order found there to another instant."""
    times = [created for created, _ in orders]
    half = len(orders) // 2
    partition = poll.k.partition
    kids = partition.split(part, sorted({v for _, v in orders if v is not None})) if partition is not None else []
    which = [next((i for i, kid in enumerate(kids) if kid.contains(v)), -1) for _, v in orders]
    starts = [m for m in range(1, len(orders)) if which[m] != which[m - 1]]
    near = min(starts, key=lambda m: abs(m - half), default=half)
    for at in range(max(1, near), min(len(times) - 1, near + 64)):
        if times[at - 1] > times[at] > times[at + 1]:
            return at
    return near


def _current(poll: _Poll, state: str | None, part: Part, rows: Mapping[str, Row]) -> list[tuple[str, str | None]]:
    """The creation times and partition values, newest first, of the orders in ``state`` and ``part`` as the poll
    knows them now: the stored ``rows`` with this poll's sightings applied."""
    orders: list[tuple[str, str | None]] = []
    for key in {*rows, *poll.v.seen}:
        now = poll.current(key)
        if now is False:
            was = rows.get(key)
            if was is None or (state is not None and state in poll.away.get(key, ())):
                continue
            now = was
        if now is None or (state is not None and now.raw_state != state) or not part.contains(now.value):
            continue
        if now.created is not None:
            orders.append((now.created, now.value))
    orders.sort(reverse=True)
    return orders


def _likely(
    poll: _Poll, state: str | None, part: Part, expected: int, diff: int, kids: Sequence[Part]
) -> tuple[dict[Part, int], int | None]:
    """The children of ``part`` most likely to hold its difference (0, then 1), from the order the server listed
    at offset m of the part (newest first) when it was counted; empty when that says nothing. And when the order
    is the newest of its child, alone in its instant, and the count has no strays: the net difference among the
    children newer than it (0), m less the orders the snapshot has there. Only an order to count the children in,
    never evidence: a server that lists otherwise costs requests, not events."""
    order, asked, rows = poll.hints.get((state, part)), poll.offsets.get((state, part)), poll.rows.get((state, part))
    if order is None or asked is None or rows is None:
        return {}, None
    m, boundary = asked
    t, value = order.created, poll.value(order)
    if t is None or value is None or not part.contains(value):
        return {}, None
    current = _current(poll, state, part, rows)
    times = [created for created, _ in current]
    newer = sum(1 for c in times if c > t)
    same = sum(1 for c in times if c == t)
    extra = max(0, expected - len(times))  # a substring search's orders outside the part, anywhere in the list
    # the children newer than the one the order was asked in: with the order alone in its instant and no strays,
    # m - newer is the net difference above it, and so among them (but for the few orders between it and them)
    newer_kids = [kid for kid in kids if kid.lo is not None and boundary is not None and kid.lo > boundary]
    if same == 1 and not extra and newer_kids and len(newer_kids) < len(kids):
        return {kid: 0 if kid in newer_kids else 1 for kid in kids}, m - newer  # 0: the newer side
    # with nothing changed above t, m lies in [newer, newer + same - 1 + extra]: one order fewer above t moves
    # that window down by one, one more up by one; where the windows overlap the order at m cannot tell
    if (newer > m and diff < 0) or (m > newer + same - 1 + extra and diff > 0):
        above = True
    elif (diff < 0 and m == newer + same - 1 + extra) or (diff > 0 and m == newer):
        above = False
    else:
        return {}, None
    likely: dict[Part, int] = {}
    for kid in kids:
        is_newer = kid.lo is not None and kid.lo > value
        is_older = kid.hi is not None and kid.hi <= value
        if above and is_newer:
            likely[kid] = 0
        elif above and not is_older:
            likely[kid] = 1  # the order's own child: only its orders above the order, few, are above it
        elif not above and not is_newer:
            likely[kid] = 0
    return likely, None


def _compare(poll: _Poll, state: str | None, part: Part, count: int) -> Generator[list[Ask], list[Answer], None]:
    """List one small part in ``state`` and compare it order by order with the snapshot: orders listed are seen;
    stored ones not listed left the state or are gone (read from the detail endpoint, or looked for in the part's
    list of every state, which proves absence when complete)."""
    v = poll.v
    orders, listed_total, why = yield from poll.listing(state, part)
    if why is not None:
        if poll.caps.get("state_filter") is False or poll.caps.get("partition") is False:
            v.full_now = why
        else:
            v.reasons.append(f"{'orders' if state is None else repr(state)} in {part}: {why}")
        return
    inside = [o for o in orders if part.contains(poll.value(o))]
    yield from poll.lookup(poll.see(orders))
    (rows,) = yield [LocalRows(state, part)]
    assert isinstance(rows, Mapping)
    for key, row in rows.items():
        poll.stored.setdefault(key, row)
    listed = {o.key for o in inside}
    distinct = len({o.key for o in orders})
    complete = listed_total is not None and listed_total == distinct
    missing = [key for key in rows if key not in listed and poll.current(key) is False]
    if not missing:
        return
    if len(missing) <= DETAIL_MAX and poll.caps.get("detail"):
        yield from _details(poll, missing)
        return
    if state is None:
        if complete:
            v.gone.update(missing)  # the part's whole list, read completely, does not have them: they are gone
        return
    for key in missing:
        poll.away.setdefault(key, set()).add(state)
    (everything,) = yield [LocalCount(None, part)]
    assert isinstance(everything, int)
    if math.ceil(everything / poll.k.page_size) <= CHASE_PAGES and not poll.over_budget(CHASE_PAGES):
        yield from _compare(poll, None, part, everything)  # where they went, or that they are gone
    # else: orders that left ``state`` show up in another state's reconciliation, the gone ones in the total's

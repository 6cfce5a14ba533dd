"""Issue 6: incremental polls give the same events as full sweeps on the same history, and cost far fewer requests.

Two stores (two ``Poller``s) watch one simulator: one polls only with full sweeps, the other incrementally (its first
poll is a full sweep, and it sweeps fully when an incremental poll asks for it); both end with a full sweep.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orderwatch.core.model import Event
from orderwatch.simulator import TRANSITIONS, Api, SimServer, Simulator
from orderwatch.sources import Source, make_source
from orderwatch.store import Store
from orderwatch.sweep.http import Clients
from orderwatch.sweep.poller import Poller, PollResult
from tests.conftest import ACE_TOKEN, LSKY_TOKEN

KIND = {"ace": "acedata", "lsky": "lsky"}
TOKEN = {"ace": ACE_TOKEN, "lsky": LSKY_TOKEN}
OPEN = {"ace": ("Pending", "Paid"), "lsky": ("unpaid",)}
CLOSED = {"ace": ("Finished", "Expired", "Failed", "Refunded"), "lsky": ("paid", "cancelled")}
KEY = {"ace": "id", "lsky": "trade_no"}
STATE = {"ace": "state", "lsky": "status"}

EventTuple = tuple[str, str, str, str | None, str | None, str | None, str | None]


def as_tuple(e: Event) -> EventTuple:
    return (e.source, e.order_id, e.kind, e.from_state, e.to_state, e.raw_from, e.raw_to)


@dataclass
class Watch:
    """One simulator (served on loopback) and two pollers with their own stores: ``full`` and ``inc``."""

    sim: Simulator
    api: Api
    src: Source
    full: Poller
    inc: Poller

    async def poll_full(self) -> PollResult:
        """The full-sweep poller polls (always a full sweep)."""
        return await self.full.poll(self.src, full=True)

    async def poll_inc(self) -> PollResult:
        """The incremental poller polls, deciding itself (full until a baseline or when asked, else incremental)."""
        return await self.inc.poll(self.src, full=None)

    async def poll_both(self) -> tuple[PollResult, PollResult]:
        """Both poll the same state: the full-sweep poller first, then the incremental one."""
        return await self.poll_full(), await self.poll_inc()

    def events(self, poller: Poller) -> Counter[EventTuple]:
        """The multiset of events ``poller`` recorded."""
        return Counter(as_tuple(e) for e in poller.store.events())

    def keys(self, states: tuple[str, ...]) -> list[str]:
        """Keys of the simulator's orders now in one of ``states``, oldest first."""
        return [o[KEY[self.api]] for o in self.sim.orders(self.api) if o[STATE[self.api]] in states]

    def inc_was_incremental(self) -> bool:
        """True when the incremental poller's last poll was not a full sweep."""
        state = self.inc.store.source_state(self.src.name)
        assert state is not None
        return state.last_full_at != state.last_poll_at


def source(api: Api, url: str, page_size: int) -> Source:
    return make_source(name=api, kind=KIND[api], base_url=url, token=TOKEN[api], page_size=page_size, timeout=10.0)


class WatchFactory:
    """Builds ``Watch``es sharing one set of HTTP clients; ``aclose`` closes everything it built."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.servers: list[SimServer] = []
        self.stores: list[Store] = []
        self.clients = Clients()

    def __call__(self, sim: Simulator, api: Api, page_size: int) -> Watch:
        server = SimServer(sim).start()
        self.servers.append(server)
        n = len(self.servers)
        full = Store.open(self.tmp_path / f"full{n}.db")
        inc = Store.open(self.tmp_path / f"inc{n}.db")
        self.stores += [full, inc]
        src = source(api, server.url, page_size)
        return Watch(sim, api, src, Poller(full, self.clients), Poller(inc, self.clients))

    async def aclose(self) -> None:
        await self.clients.aclose()
        for store in self.stores:
            store.close()
        for server in self.servers:
            server.stop()


@pytest.fixture
async def watches(tmp_path: Path) -> AsyncIterator[WatchFactory]:
    """A ``WatchFactory``; its clients, stores and servers are closed afterwards."""
    factory = WatchFactory(tmp_path)
    yield factory
    await factory.aclose()


def new_sim(api: Api, seed: int, *, page: int, closed: int = 0, open_: int = 0) -> Simulator:
    """A simulator with ``closed`` old orders in closed states, then ``open_`` newer open ones, of ``api``."""
    sim = Simulator(seed=seed, ace_token=ACE_TOKEN, lsky_token=LSKY_TOKEN, max_page_size=page)
    for i in range(closed):
        add(sim, api, 1, CLOSED[api][i % len(CLOSED[api])])
    for i in range(open_):
        add(sim, api, 1, OPEN[api][i % len(OPEN[api])])
    return sim


def add(sim: Simulator, api: Api, n: int, state: str | None = None) -> list[str]:
    """Create ``n`` orders of ``api`` (in ``state``, else the API's first open state)."""
    if api == "ace":
        return sim.add_ace(n, state=state or "Pending")
    return sim.add_lsky(n, status=state or "unpaid")


def legal_move(rng: random.Random, api: Api, state: str, *, closing: bool = False) -> str | None:
    """A legal next state of ``state`` (``closing``: only a closed one), or None at a final state."""
    nxt = [s for s in TRANSITIONS[api][state] if not closing or s not in OPEN[api]]
    return rng.choice(nxt) if nxt else None


def move_on(w: Watch, rng: random.Random, keys: list[str], *, closing: bool = False) -> list[str]:
    """Move each of ``keys`` to a legal next state; return the keys that moved."""
    moved = []
    for key in keys:
        state = w.sim.state_of(w.api, key)
        nxt = legal_move(rng, w.api, state, closing=closing) if state else None
        if nxt:
            w.sim.set_state(w.api, key, nxt)
            moved.append(key)
    return moved


def churn(w: Watch, rng: random.Random, rnd: int) -> list[str]:
    """One round of scripted and random changes; returns the open orders a burst closed (none most rounds)."""
    sim, api = w.sim, w.api
    sim.step(rng.randint(0, 25))  # random legal moves of both APIs (creations, moves, lsky deletions)
    open_now = w.keys(OPEN[api])
    move_on(w, rng, rng.sample(open_now, k=min(4, len(open_now))))
    if api == "ace" and (finished := w.keys(("Finished",))):
        sim.set_state(api, rng.choice(finished), "Refunded")  # a closed order changes: only a full sweep sees it
    add(sim, api, rng.randint(0, 12))
    if rnd % 5 == 2 and open_now:  # an open order is deleted (lsky: cancelled first): a full sweep must follow
        key = rng.choice(open_now)
        if api == "lsky":
            sim.set_state(api, key, "cancelled")
        sim.delete(api, key)
    if api == "lsky":
        cancelled = w.keys(("cancelled",))
        for key in rng.sample(cancelled, k=min(2, len(cancelled))):
            sim.delete(api, key)
    (fresh,) = add(sim, api, 1)  # a new order that already moved on before anyone saw it
    move_on(w, rng, [fresh])
    if rnd % 4 == 0:  # many open orders, seen by both pollers this round ...
        add(sim, api, 30)
        return []
    if rnd % 4 == 1:  # ... more than 20 of them (the oldest open ones) leave the open set in one round
        burst = move_on(w, rng, w.keys(OPEN[api])[:24], closing=True)
        assert len(burst) > 20
        return burst
    return []


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [3, 8])
@pytest.mark.parametrize("api", ["ace", "lsky"])
async def test_incremental_and_full_polls_record_the_same_events(watches: WatchFactory, api: Api, seed: int) -> None:
    """On one scripted and random history, incremental polling records exactly the full sweeps' event multiset."""
    sim = new_sim(api, seed, page=20, closed=60, open_=30)
    sim.step(40)
    w = watches(sim, api, page_size=20)
    rng = random.Random(seed)
    first_full, first_inc = await w.poll_both()
    assert first_full.baseline and first_inc.baseline
    incremental_polls = bursts_checked = 0
    for rnd in range(14):
        burst = churn(w, rng, rnd)
        full, inc = await w.poll_both()
        assert full.ok and full.consistent, full.error
        assert inc.complete, inc.error
        incremental_polls += w.inc_was_incremental()
        if burst and w.inc_was_incremental():  # the filtered scan of closed states found every one of them
            assert set(burst) <= {e.order_id for e in inc.events if e.kind == "transition"}
            bursts_checked += 1
    final_full, final_inc = await w.poll_full(), await w.inc.poll(w.src, full=True)
    assert final_full.ok and final_inc.ok

    full_events, inc_events = w.events(w.full), w.events(w.inc)
    assert inc_events == full_events
    assert incremental_polls >= 8 and bursts_checked >= 2
    kinds = Counter(e[2] for e in full_events.elements())
    assert kinds["appeared"] > 20 and kinds["transition"] > 30 and kinds["vanished"] >= 2
    assert w.full.store.snapshot(api) == w.inc.store.snapshot(api)


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["ace", "lsky"])
async def test_incremental_poll_makes_far_fewer_requests_than_a_full_sweep(watches: WatchFactory, api: Api) -> None:
    """At 8,000 orders, a few new and a few moved, an incremental poll asks at most an eighth of a sweep's requests."""
    sim = new_sim(api, 5, page=100, closed=7_940, open_=60)
    w = watches(sim, api, page_size=100)
    await w.poll_both()
    rng = random.Random(5)
    add(sim, api, 7)
    assert len(move_on(w, rng, rng.sample(w.keys(OPEN[api]), 5))) == 5

    sim.reset_stats()
    full = await w.poll_full()
    full_requests = sim.requests(api)
    sim.reset_stats()
    inc = await w.poll_inc()
    inc_requests = sim.requests(api)

    assert w.inc_was_incremental()
    assert full_requests >= 80
    assert inc_requests * 8 <= full_requests, (inc_requests, full_requests)
    assert (inc.requests, full.requests) == (inc_requests, full_requests)
    assert sim.bytes(api) * 8 <= full.bytes
    assert Counter(map(as_tuple, inc.events)) == Counter(map(as_tuple, full.events))
    assert len(inc.events) == 12


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["ace", "lsky"])
@pytest.mark.parametrize("moved", [3, 25])
async def test_open_orders_that_left_the_open_set_are_found(watches: WatchFactory, api: Api, moved: int) -> None:
    """Open orders that became closed are reported by an incremental poll: by detail (<= 20) or by a filtered scan.

    The open orders are spread over the whole history, so the scan must reach back to the oldest of them.
    """
    sim = Simulator(seed=21, ace_token=ACE_TOKEN, lsky_token=LSKY_TOKEN, max_page_size=20)
    for _ in range(40):  # open orders interleaved with closed ones, oldest first
        add(sim, api, 1)
        (closed,) = add(sim, api, 1)
        sim.set_state(api, closed, CLOSED[api][0])
        sim.set_state(api, add(sim, api, 1)[0], CLOSED[api][1])
    w = watches(sim, api, page_size=20)
    await w.poll_both()
    left = w.keys(("Pending", "unpaid"))[:moved]
    to = CLOSED[api][-1]
    for key in left:
        sim.set_state(api, key, to)

    sim.reset_stats()
    inc = await w.poll_inc()
    assert inc.ok and w.inc_was_incremental()
    moved_events = {(e.order_id, e.kind, e.raw_to) for e in inc.events}
    assert moved_events == {(k, "transition", to) for k in left}
    if moved > 20:  # one request per order would be at least ``moved``: the scan asks for pages instead
        assert sim.requests(api) < moved
    else:  # newest page, open set (2 pages of 20), then one detail request per order
        assert sim.requests(api) <= 3 + moved
    full = await w.poll_full()
    assert Counter(map(as_tuple, full.events)) == Counter(map(as_tuple, inc.events))


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["ace", "lsky"])
@pytest.mark.parametrize("deleted", [1, 22])
async def test_a_deleted_open_order_asks_for_a_full_sweep(watches: WatchFactory, api: Api, deleted: int) -> None:
    """An open order gone from the API is not reported by the incremental poll; the next poll sweeps and reports it."""
    sim = new_sim(api, 2, page=10, closed=30, open_=40)
    w = watches(sim, api, page_size=10)
    await w.poll_inc()
    gone = w.keys(OPEN[api])[-deleted:]
    raw_from = {k: sim.state_of(api, k) for k in gone}
    for key in gone:
        if api == "lsky":
            sim.set_state(api, key, "cancelled")
        sim.delete(api, key)
    moved = w.keys(OPEN[api])[0]
    sim.set_state(api, moved, CLOSED[api][0])

    first = await w.poll_inc()
    assert w.inc_was_incremental()
    assert first.ok, first.error
    assert [(e.order_id, e.kind) for e in first.events] == [(moved, "transition")]

    second = await w.poll_inc()
    assert not w.inc_was_incremental()
    vanished = {(e.order_id, e.kind, e.raw_from) for e in second.events}
    assert vanished == {(k, "vanished", raw_from[k]) for k in gone}
    third = await w.poll_inc()
    assert w.inc_was_incremental() and third.events == ()

"""Every net change between two polls is reported by the next poll, exactly once, whatever the server's conventions.

A real simulator on loopback serves an account in a shop's steady state (settled orders, the newest few open);
each round changes it — open orders move on or settle, settled ones change (Ace Finished → Refunded, Lsky paid →
cancelled), cancelled Lsky orders are deleted, new orders arrive — and the next poll's events must be exactly the
net changes since the poll before, computed from the simulator's own state. The pollers run in-process, in new
``orderwatch poll`` processes, and in the daemon.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from orderwatch.core.model import Event
from orderwatch.simulator import Api, Conventions, SimServer, Simulator
from orderwatch.sources import Source, make_source
from orderwatch.store import Store
from orderwatch.sweep import Poller, PollResult, clients
from tests.conftest import ACE_TOKEN, LSKY_TOKEN, config_text, run_cli
from tests.receivers import WebhookReceiver
from tests.test_daemon import Daemon, daemon_config, hook, start, stored_events

__all__ = ["hook", "start"]  # the fixtures of the daemon's tests, used here too

KIND = {"ace": "acedata", "lsky": "lsky"}
TOKEN = {"ace": ACE_TOKEN, "lsky": LSKY_TOKEN}
KEY = {"ace": "id", "lsky": "trade_no"}
STATE = {"ace": "state", "lsky": "status"}
OPEN = {"ace": ("Pending", "Paid"), "lsky": ("unpaid",)}
SETTLED = {"ace": ("Finished", "Expired", "Failed", "Refunded"), "lsky": ("paid", "cancelled")}
LSKY_CANONICAL = {"unpaid": "Pending", "paid": "Paid", "cancelled": "Cancelled"}
Seen = tuple[str, str, str | None, str | None]  # (order, kind, raw_from, raw_to)


def canonical(api: Api, raw: str) -> str:
    """The canonical state of a raw state."""
    return LSKY_CANONICAL[raw] if api == "lsky" else raw


def truth(sim: Simulator, api: Api) -> dict[str, str]:
    """Every order of ``api`` with its raw state, now."""
    return {o[KEY[api]]: o[STATE[api]] for o in sim.orders(api)}


def net(api: Api, before: dict[str, str], after: dict[str, str]) -> set[Seen]:
    """The events the change from ``before`` to ``after`` must make."""
    out: set[Seen] = set()
    for key, state in after.items():
        old = before.get(key)
        if old is None:
            out.add((key, "appeared", None, state))
        elif canonical(api, old) != canonical(api, state):
            out.add((key, "transition", old, state))
    out |= {(key, "vanished", state, None) for key, state in before.items() if key not in after}
    return out


def seen(events: tuple[Event, ...] | list[Event]) -> set[Seen]:
    """Events as (order, kind, raw_from, raw_to), checking each is reported once."""
    found = [(e.order_id, e.kind, e.raw_from, e.raw_to) for e in events]
    assert len(found) == len(set(found)), "an event was reported twice"
    return set(found)


def account(api: Api, n: int, *, seed: int, page: int, conventions: Conventions | None = None) -> Simulator:
    """An account of ``n`` orders: settled ones, then the newest 5% open."""
    sim = Simulator(seed=seed, ace_token=ACE_TOKEN, lsky_token=LSKY_TOKEN, max_page_size=page, conventions=conventions)
    rng = random.Random(seed)
    for i in range(n):
        states = OPEN[api] if i >= n * 0.95 else SETTLED[api]
        add(sim, api, 1, rng.choice(states))
    return sim


def add(sim: Simulator, api: Api, n: int, state: str | None = None) -> list[str]:
    """``n`` new orders of ``api`` (in ``state``, else the first open state)."""
    if api == "ace":
        return sim.add_ace(n, state=state or "Pending")
    return sim.add_lsky(n, status=state or "unpaid")


def churn(sim: Simulator, api: Api, rng: random.Random) -> None:
    """One round of changes: open orders move on or settle, settled ones change or go, new ones arrive."""
    now = truth(sim, api)
    by_state: dict[str, list[str]] = {}
    for key, state in now.items():
        by_state.setdefault(state, []).append(key)
    for key in rng.sample(by_state.get(OPEN[api][0], []), k=min(4, len(by_state.get(OPEN[api][0], [])))):
        sim.set_state(
            api, key, rng.choice(("Paid", "Expired", "Finished")) if api == "ace" else rng.choice(("paid", "cancelled"))
        )
    if api == "ace":
        for key in rng.sample(by_state.get("Finished", []), k=min(2, len(by_state.get("Finished", [])))):
            sim.set_state(api, key, "Refunded")  # a settled order changes: counts find it
        if by_state.get("Expired"):
            sim.delete(api, rng.choice(by_state["Expired"]))
    else:
        for key in rng.sample(by_state.get("paid", []), k=min(2, len(by_state.get("paid", [])))):
            sim.set_state(api, key, "cancelled")
        for key in rng.sample(by_state.get("cancelled", []), k=min(2, len(by_state.get("cancelled", [])))):
            sim.delete(api, key)
    add(sim, api, rng.randint(1, 6))
    (fresh,) = add(sim, api, 1)  # born and moved on before any poll saw it
    sim.set_state(api, fresh, "Paid" if api == "ace" else "paid")


@dataclass
class Watched:
    """One simulated API on loopback and a poller with its own database."""

    sim: Simulator
    api: Api
    src: Source
    poller: Poller
    modes: list[str] = field(default_factory=list)

    async def poll(self) -> PollResult:
        """Poll once (the poller chooses the plan)."""
        result = await self.poller.poll(self.src)
        self.modes.append(result.mode)
        return result


@pytest.fixture
async def watch(tmp_path: Path) -> AsyncIterator[type[Watched]]:
    """Builds ``Watched`` sources on loopback; everything is closed afterwards."""
    servers: list[SimServer] = []
    stores: list[Store] = []
    async with clients() as pool:

        class Watch(Watched):
            @classmethod
            def of(cls, sim: Simulator, api: Api, page: int) -> Watched:
                server = SimServer(sim).start()
                servers.append(server)
                store = Store.open(tmp_path / f"db{len(stores)}.sqlite")
                stores.append(store)
                src = make_source(api, KIND[api], server.url, token=TOKEN[api], page_size=page, timeout=10.0)
                return cls(sim, api, src, Poller(store, pool))

        yield Watch
    for store in stores:
        store.close()
    for server in servers:
        server.stop()


def applies(api: Api, conventions: Conventions) -> bool:
    """True when the conventions change something of ``api``'s server."""
    return any(name.startswith(f"{api}_") for name in conventions.changes())


VARIATIONS = [
    pytest.param(api, c, id=f"{api}-{c}")
    for api in ("ace", "lsky")
    for c in [Conventions(), Conventions.django(), Conventions.laravel(), Conventions.seed(), *Conventions.variations()]
    if c == Conventions() or applies(api, c)
]


@pytest.mark.anyio
@pytest.mark.parametrize(("api", "conventions"), VARIATIONS)
async def test_the_next_poll_reports_every_net_change_exactly_once(
    watch: type[Watched], api: Api, conventions: Conventions
) -> None:
    """Under each server convention, each poll's events are exactly the net changes since the poll before."""
    sim = account(api, 1500, seed=7, page=25, conventions=conventions)
    w = watch.of(sim, api, 25)  # type: ignore[attr-defined]
    first = await w.poll()
    assert first.baseline and first.ok, first.error
    rng = random.Random(11)
    before = truth(sim, api)
    for _ in range(4):
        churn(sim, api, rng)
        after = truth(sim, api)
        result = await w.poll()
        assert seen(result.events) == net(api, before, after), (result.mode, result.error)
        before = after
    if conventions == Conventions():
        assert "incremental" in w.modes[1:]  # a server that does what it is asked is polled incrementally


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["ace", "lsky"])
async def test_an_incremental_poll_costs_a_small_share_of_a_full_sweep(watch: type[Watched], api: Api) -> None:
    """At 20,000 orders with a few refunds, deletions, moves and new orders, an incremental poll asks under a
    third of a sweep's requests and reports every change (the benchmark measures the 100k-order figures)."""
    sim = account(api, 20_000, seed=3, page=100)
    w = watch.of(sim, api, 100)  # type: ignore[attr-defined]
    await w.poll()
    before = truth(sim, api)
    churn(sim, api, random.Random(5))
    after = truth(sim, api)
    sim.reset_stats()
    result = await w.poll()
    assert result.mode == "incremental" and result.ok, result.error
    assert seen(result.events) == net(api, before, after)
    assert sim.requests(api) * 3 <= 20_000 // 100, sim.requests(api)


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["ace", "lsky"])
async def test_a_small_account_is_swept_whole(watch: type[Watched], api: Api) -> None:
    """At 120 orders a full sweep costs fewer requests than an incremental poll would: the poller sweeps, and
    asks nothing but the sweep (its pages, the page past the end, a re-check of each missing order)."""
    sim = account(api, 120, seed=4, page=100)
    w = watch.of(sim, api, 100)  # type: ignore[attr-defined]
    await w.poll()
    churn(sim, api, random.Random(1))
    sim.reset_stats()
    result = await w.poll()
    assert result.mode == "full" and result.ok
    assert result.requests == sim.requests(api) <= 3 + 2  # two pages, the page past the end, two re-checks


# Server conventions for the tests that run the real CLI: each bundles several departures, so that a few runs cover
# every kind (filters misread, ignored or refused; detail paths moved, missing or ignoring the id; sorting, ranges and
# search ignored; counts that lie; other paginator shapes).
PROCESS_CONVENTIONS = {
    "django+laravel": Conventions.django().merged(Conventions.laravel()),
    "seed": Conventions.seed(),
    "misread": Conventions().with_switches(
        ["ace_multi=last", "lsky_status_filter=first", "ace_detail=slash", "lsky_detail=none", "ace_sort=ignored",
         "lsky_sort=ignored", "ace_count=low", "lsky_count=low"]
    ),
    "ignored": Conventions().with_switches(
        ["ace_state_filter=ignored", "lsky_status_filter=ignored", "ace_detail=ignores_id", "lsky_detail=ignores_id",
         "ace_created_range=ignored", "lsky_search=ignored", "ace_count=string", "lsky_paginator=simple"]
    ),
    "refused": Conventions().with_switches(
        ["ace_multi=choice", "ace_detail=none", "lsky_search=prefix", "ace_count=missing", "lsky_count=negative",
         "ace_list=results", "ace_links=drf", "lsky_paginator=plain", "ace_created_range=exclusive_to"]
    ),
}  # fmt: skip


@pytest.fixture(params=list(PROCESS_CONVENTIONS))
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Simulator, Path]]:
    """Both APIs on one simulator under one bundle of ``PROCESS_CONVENTIONS``, on loopback, with a config."""
    sim = Simulator(
        seed=5, ace_token=ACE_TOKEN, lsky_token=LSKY_TOKEN, max_page_size=25,
        conventions=PROCESS_CONVENTIONS[request.param],
    )  # fmt: skip
    rng = random.Random(2)
    for api in ("ace", "lsky"):
        for i in range(1500):
            add(sim, api, 1, rng.choice(OPEN[api] if i >= 1425 else SETTLED[api]))
    with SimServer(sim) as server:
        path = tmp_path / "orderwatch.toml"
        path.write_text(config_text(server.url, tmp_path / "ow.db", page_size=25))
        yield sim, path


def cli_seen(out: list[dict[str, object]], source: str) -> set[Seen]:
    """The events of one source in a ``poll --format ndjson`` output."""
    return {
        (str(e["order_id"]), str(e["kind"]), e["raw_from"], e["raw_to"])  # type: ignore[misc]
        for e in out
        if e["source"] == source
    }


def test_each_new_poll_process_reports_what_changed_since_the_last(served: tuple[Simulator, Path]) -> None:
    """Under each bundle of server conventions, `orderwatch poll` in a new process each time reports every net change
    of both APIs exactly once (by an incremental poll where the server can be trusted for one)."""
    sim, config = served
    assert run_cli(config, "poll").code == 0
    rng = random.Random(9)
    before = {api: truth(sim, api) for api in ("ace", "lsky")}
    modes: set[str] = set()
    for _ in range(3):
        churn(sim, "ace", rng)
        churn(sim, "lsky", rng)
        after = {api: truth(sim, api) for api in ("ace", "lsky")}
        ran = run_cli(config, "poll", "--format", "ndjson")
        assert ran.code == 0, ran.err
        events = ran.ndjson()
        assert len(events) == len({(e["source"], e["order_id"], e["kind"]) for e in events})
        assert cli_seen(events, "ace") == net("ace", before["ace"], after["ace"])
        assert cli_seen(events, "images") == net("lsky", before["lsky"], after["lsky"])
        modes |= {"incremental" for line in ran.err.splitlines() if "mode=incremental" in line}
        before = after
    assert modes == {"incremental"} or sim.conventions != PROCESS_CONVENTIONS["django+laravel"]


class FailingOpenLists(httpx.AsyncHTTPTransport):
    """The real network, but the second page of every list of Pending orders answers 503 (a server failing in the
    middle of a poll) while ``failing`` is set."""

    failing = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params
        if self.failing and query.get("state") == "Pending" and query.get("offset") not in (None, "0"):
            return httpx.Response(503, json={"detail": "Service Unavailable"})
        return await super().handle_async_request(request)


@pytest.mark.anyio
async def test_what_a_poll_could_not_settle_is_settled_first_by_the_next_process(tmp_path: Path) -> None:
    """A poll that fails part-way says why in one line and stores it with the source; a new process (a new store
    and poller on the same database) then sweeps in full first and reports what changed, once."""
    sim = account("ace", 1500, seed=8, page=25)
    for key in add(sim, "ace", 30):  # enough open orders for a second page of Pending
        sim.set_state("ace", key, "Pending")
    transport = FailingOpenLists()
    with SimServer(sim) as server:
        src = make_source("ace", "acedata", server.url, token=ACE_TOKEN, page_size=25, retry_budget=0.0)
        db = tmp_path / "ow.db"
        async with clients(transport) as pool:
            first = Store.open(db)
            try:
                assert (await Poller(first, pool).poll(src)).baseline
                key = next(k for k, s in truth(sim, "ace").items() if s == "Finished")
                sim.set_state("ace", key, "Refunded")
                broken = await Poller(first, pool).poll(src)
                state = first.source_state("ace")
            finally:
                first.close()
            assert broken.mode == "incremental" and not broken.ok
            assert broken.error is not None and "\n" not in broken.error and "Pending" in broken.error
            assert state is not None and state.full_due == broken.error
            transport.failing = False
            second = Store.open(db)  # what a new `orderwatch poll` process starts from
            try:
                again = await Poller(second, pool).poll(src)
                cleared = second.source_state("ace")
            finally:
                second.close()
    assert again.mode == "full" and again.ok, again.error
    assert seen(again.events) == {(key, "transition", "Finished", "Refunded")} - seen(broken.events)
    assert cleared is not None and cleared.full_due is None


def started(line: dict[str, Any]) -> float:
    """When the poll a JSON ``polled`` line reports began (Unix time; its duration is rounded to 1 ms)."""
    return datetime.fromisoformat(line["timestamp"]).timestamp() - float(line["duration"]) - 0.001


def test_the_daemon_reports_every_change_at_its_next_poll(
    tmp_path: Path, start: Callable[[Path], Daemon], hook: WebhookReceiver
) -> None:
    """The first poll of each source the running daemon starts after a round of changes records exactly the net
    changes not already recorded by a poll under way (Django- and Laravel-like servers); the polls after it record
    nothing more."""
    sim = Simulator(
        seed=6, ace_token=ACE_TOKEN, lsky_token=LSKY_TOKEN, max_page_size=25,
        conventions=Conventions.django().merged(Conventions.laravel()),
    )  # fmt: skip
    rng = random.Random(4)
    apis: tuple[Api, ...] = ("ace", "lsky")
    for api in apis:
        for i in range(1500):
            add(sim, api, 1, rng.choice(OPEN[api] if i >= 1425 else SETTLED[api]))
    with SimServer(sim) as server:
        config = tmp_path / "orderwatch.toml"
        text = daemon_config(server.url, tmp_path / "ow.db", hook, sources=("ace", "images"))
        config.write_text(text.replace("page_size = 10", "page_size = 25"))
        daemon = start(config)
        for source in ("ace", "images"):
            daemon.wait_log("polled", source=source, baseline=True)
        mark = daemon.mark()
        with sim.lock:  # one step between two answers: a request sees all of the round or none of it
            before = {api: truth(sim, api) for api in apis}
            for api in apis:
                churn(sim, api, rng)
            after = {api: truth(sim, api) for api in apis}
            changed = time.time()
        expected = {
            "ace": net("ace", before["ace"], after["ace"]),
            "images": net("lsky", before["lsky"], after["lsky"]),
        }
        for source in ("ace", "images"):
            # a poll under way during the round may see some of it; the next poll to start sees the rest, and
            # the two polls after that see nothing
            polls = daemon.wait_log("polled", after=mark, source=source)
            while not any(started(line) > changed for line in polls):
                polls = daemon.wait_log("polled", n=len(polls) + 1, after=mark, source=source)
            nxt = next(i for i, line in enumerate(polls) if started(line) > changed)
            polls = daemon.wait_log("polled", n=nxt + 3, after=mark, source=source)
            assert sum(line["events"] for line in polls[: nxt + 1]) == len(expected[source]), polls
            assert [line["events"] for line in polls[nxt + 1 :]] == [0] * (len(polls) - nxt - 1), polls
        assert daemon.stop() == 0
    recorded = stored_events(tmp_path / "ow.db")
    for source in ("ace", "images"):
        assert seen([e for e in recorded if e.source == source]) == expected[source]

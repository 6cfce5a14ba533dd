"""One benchmark measurement per process (fresh memory, its own CPU clock); ``run.py`` starts these.

    python benchmarks/worker.py diffstore --orders N --db DIR          (a) diff + Store.record throughput
    python benchmarks/worker.py requests --api A --orders N --db DIR   (b) requests/bytes: incremental vs full
    python benchmarks/worker.py fullpoll --api A --url U --db DIR      (c) full poll vs a bare httpx client
    python benchmarks/worker.py baseline --api A --url U --db DIR      (c) first poll into an empty store vs bare

Each prints its result as one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
from common import Timed, churn, emit, max_rss_mb, populate, quiet_logs, source, timed

from orderwatch.core.diff import diff
from orderwatch.core.model import Change, Observation, Order
from orderwatch.simulator import Api, SimServer, Simulator
from orderwatch.sources import ADAPTERS, Source
from orderwatch.store import Store
from orderwatch.sweep.full import FullSweep
from orderwatch.sweep.http import Clients
from orderwatch.sweep.poller import Poller

T0 = "2026-01-01T00:00:00.000000Z"
ACE_STATES = ("Pending", "Paid", "Finished", "Expired", "Failed", "Refunded")
PAGE = 100  # orders per page, as the simulator serves them


# ---- (a) diff + store --------------------------------------------------------------------------------------------


def ace_like(i: int, state: str, stamp: str) -> dict[str, Any]:
    """Order ``i`` shaped like an Ace Data Cloud list item (about 650 bytes of JSON; a random-looking UUID key)."""
    h = hashlib.blake2b(i.to_bytes(8, "little"), digest_size=16).hexdigest()
    key = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
    return {
        "id": key,
        "user_id": "3f1c2b9a-7d4e-4f0a-8c6b-1e2d3c4b5a69",
        "application_id": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
        "package_id": "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
        "amount": 1000,
        "price": 89.99,
        "discount": 1.0,
        "pay_way": "Stripe",
        "pay_id": f"stripe_{key[:8]}",
        "pay_url": f"https://pay.example.invalid/{key}" if state == "Pending" else None,
        "state": state,
        "remaining_amount": 0,
        "applications": [{"id": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d", "type": "Usage", "remaining_amount": 1000}],
        "packages": [{"id": "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e", "amount": 1000, "price": 89.99}],
        "tags": None,
        "metadata": None,
        "created_at": f"2025-{1 + i % 12:02d}-01T00:00:00.{i % 1000000:06d}Z",
        "updated_at": stamp,
    }


def build(i: int, state: str, stamp: str) -> Order:
    """Order ``i`` as the adapters build it (canonical JSON and content hash)."""
    raw = ace_like(i, state, stamp)
    return Order.build(raw["id"], state, state, raw)


def build_cost(n: int) -> float:
    """Microseconds of CPU per order of ``Order.build`` itself (canonical JSON + hash of an Ace-like order)."""
    raws = [ace_like(i, "Paid", T0) for i in range(n)]
    with timed() as t:
        for raw in raws:
            Order.build(raw["id"], "Paid", "Paid", raw)
    return t.cpu / n * 1e6


def streamed(store: Store, orders: list[Order], *, baselined: bool, now: str) -> None:
    """What a full poll does with the store, minus HTTP (``Poller._full``'s use of ``FullSweep``): the sweep's start
    (the fingerprint index of the stored orders), pages of 100 through its fast path with the misses settled exactly
    in batches on its thread, the unseen orders, and the final ``Store.record`` transaction."""

    async def sweep() -> Change:
        async with FullSweep(store, "bench", baselined=baselined, now=now) as sink:
            skip = sink.skip
            for i in range(0, len(orders), PAGE):
                page = orders[i : i + PAGE]
                if skip is not None:  # as the parser asks it
                    page = [o for o in page if not skip(o.key, o.state, o.raw_json)]
                await sink(tuple(page))
            await sink.distinct()
            missing = await sink.unseen()
            assert not missing
            return await sink.result(missing, proves_absence=True)

    change = anyio.run(sweep)
    assert not baselined or len(change.events) == len(orders) // 100
    store.record("bench", change, [], now=now, full=True)


def whole(store: Store, orders: list[Order], *, now: str) -> dict[str, float]:
    """The whole-list path: ``Store.snapshot`` of every order, one pure ``diff``, one ``Store.record``; seconds each."""
    observation = Observation("bench", {o.key: o for o in orders}, complete=True, consistent=True)
    with timed() as t_snap:
        previous = store.snapshot("bench")
    with timed() as t_diff:
        change = diff(previous, observation, baselined=True, now=now)
    with timed() as t_rec:
        store.record("bench", change, [], now=now, full=True)
    assert len(change.events) == len(orders) // 100
    return {"snapshot": t_snap.wall, "diff": t_diff.wall, "record": t_rec.wall}


def diffstore(n: int, rounds: int, db: Path) -> dict[str, Any]:
    """A baseline of ``n`` orders (streamed), then ``rounds`` times: 1% of the orders change state, measured through
    the streamed path; then again through the whole-list path. Orders are prebuilt: no parsing or hashing is timed.
    The first streamed round reads the fingerprint index from the database; later ones use the one the store kept."""
    rng = random.Random(7)
    build_us = build_cost(min(n, 20_000))
    orders = [build(i, ACE_STATES[i % 6], T0) for i in range(n)]
    store = Store.open(db / f"diffstore-{n}.db")
    with timed() as t_base:
        streamed(store, orders, baselined=False, now=T0)

    def churned(stamp: str) -> list[Order]:
        seen = list(orders)
        for i in rng.sample(range(n), n // 100):
            seen[i] = build(i, ACE_STATES[(ACE_STATES.index(seen[i].state) + 1) % 6], stamp)
        return seen

    stream_runs: list[Timed] = []
    whole_runs: list[dict[str, float]] = []
    for r in range(rounds):
        stamp = f"2026-01-01T00:{r + 1:02d}:00.000000Z"
        orders = churned(stamp)
        with timed() as t:
            streamed(store, orders, baselined=True, now=stamp)
        stream_runs.append(t)
        stamp = f"2026-01-01T01:{r + 1:02d}:00.000000Z"
        orders = churned(stamp)
        whole_runs.append(whole(store, orders, now=stamp))
    store.close()
    stream_wall = statistics.median(t.wall for t in stream_runs)
    stream_cpu = statistics.median(t.cpu for t in stream_runs)
    parts = {k: statistics.median(r[k] for r in whole_runs) for k in whole_runs[0]}
    return {
        "orders": n,
        "build_per_order_us": build_us,
        "baseline_write": t_base.wall,
        "streamed": stream_wall,
        "streamed_rate": n / stream_wall,
        "streamed_first_rate": n / stream_runs[0].wall,  # the round that reads the fingerprint index afresh
        "streamed_cpu_rate": n / stream_cpu,
        "whole": parts,
        "whole_rate": n / sum(parts.values()),
        "whole_rate_excl_snapshot": n / (parts["diff"] + parts["record"]),
        "max_rss_mb": max_rss_mb(),
    }


# ---- (b) requests per poll ---------------------------------------------------------------------------------------


async def requests(api: Api, n: int, rounds: int, db: Path) -> dict[str, Any]:
    """Baseline, then ``rounds`` × (1% churn, incremental poll), then 1% churn and a full sweep: requests, bytes."""
    rng = random.Random(3)
    sim = Simulator(seed=3, max_page_size=100)
    populate(sim, api, n, seed=3)
    store = Store.open(db / f"requests-{api}.db")
    incs: list[dict[str, int]] = []
    with SimServer(sim) as server:
        src = source(api, server.url)
        pool = Clients()
        poller = Poller(store, pool)
        base = await poller.poll(src, full=True)
        assert base.ok and base.baseline, base.error
        for _ in range(rounds):
            churn(sim, api, n // 100, rng)
            sim.reset_stats()
            res = await poller.poll(src, full=False)
            assert res.ok, res.error
            incs.append({"requests": sim.requests(api), "bytes": sim.bytes(api), "events": len(res.events)})
        churn(sim, api, n // 100, rng)
        sim.reset_stats()
        full = await poller.poll(src, full=True)
        assert full.ok, full.error
        full_row = {"requests": sim.requests(api), "bytes": sim.bytes(api), "events": len(full.events)}
        await pool.aclose()
    store.close()
    inc = {k: statistics.median(r[k] for r in incs) for k in incs[0]}
    return {"api": api, "orders": n, "incremental": inc, "incremental_rounds": incs, "full": full_row}


# ---- (c) one full poll against a bare client ---------------------------------------------------------------------


async def bare_fetch(client: httpx.AsyncClient, src: Source, concurrency: int = 4) -> int:
    """Fetch every page of the list and parse its JSON, nothing else (pages after the first ``concurrency`` at a
    time, like orderwatch's sweeps); returns the number of orders."""
    adapter = ADAPTERS[src.kind]
    assert src.token is not None
    auth = {"Authorization": f"Bearer {src.token.reveal()}"}

    async def get(cursor: int) -> Any:
        req = adapter.list_request(src, cursor)
        resp = await client.get(src.base_url + req.path, params=req.params, headers={**dict(req.headers), **auth})
        resp.raise_for_status()
        return orjson.loads(resp.content)

    first_cursor = adapter.first_cursor()
    first = await get(first_cursor)
    if src.kind == "acedata":
        size, total = len(first["items"]), first["count"]
        cursors = list(range(first_cursor + size, total, size))
    else:
        cursors = list(range(first_cursor + 1, first["data"]["meta"]["last_page"] + 1))
    counts = [len(first["items"] if src.kind == "acedata" else first["data"]["data"])]
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(cursor: int) -> None:
        async with limiter:
            doc = await get(cursor)
            counts.append(len(doc["items"] if src.kind == "acedata" else doc["data"]["data"]))

    async with anyio.create_task_group() as tg:
        for cursor in cursors:
            tg.start_soon(one, cursor)
    return sum(counts)


async def fullpoll(api: Api, url: str, repeats: int, db: Path) -> dict[str, Any]:
    """Baseline poll, then ``repeats`` × (bare client, orderwatch full poll), alternating; medians and ratios.

    The first full poll after the baseline is reported apart: it reads the fingerprint index from the database, as
    the first sweep of every process does; later sweeps use the index the store kept (the daemon's case)."""
    src = source(api, url)
    store = Store.open(db / f"fullpoll-{api}.db")
    pool = Clients()
    poller = Poller(store, pool)
    with timed() as t_base:
        base = await poller.poll(src, full=True)
    assert base.ok, base.error
    bare_runs: list[Timed] = []
    ow_runs: list[Timed] = []
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32, max_keepalive_connections=16)) as client:
        await bare_fetch(client, src)  # connections opened, as for the orderwatch polls after the baseline
        with timed() as t_first:
            first = await poller.poll(src, full=True)
        assert first.ok and first.orders == base.orders, first.error
        for _ in range(repeats):
            with timed() as t_bare:
                seen = await bare_fetch(client, src)
            with timed() as t_ow:
                res = await poller.poll(src, full=True)
            assert res.ok and res.orders == seen == base.orders, (res.error, res.orders, seen)
            bare_runs.append(t_bare)
            ow_runs.append(t_ow)
    await pool.aclose()
    store.close()

    def med(runs: list[Timed], attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in runs))

    bare = {"wall": med(bare_runs, "wall"), "cpu": med(bare_runs, "cpu"), "min_cpu": min(r.cpu for r in bare_runs)}
    ours = {"wall": med(ow_runs, "wall"), "cpu": med(ow_runs, "cpu"), "min_cpu": min(r.cpu for r in ow_runs)}
    return {
        "api": api,
        "orders": base.orders,
        "requests": base.requests,
        "baseline_poll": {"wall": t_base.wall, "cpu": t_base.cpu},
        "first_sweep": {"wall": t_first.wall, "cpu": t_first.cpu},
        "bare": bare,
        "orderwatch": ours,
        "wall_ratio": ours["wall"] / bare["wall"],
        "cpu_ratio": ours["cpu"] / bare["cpu"],
    }


async def baseline(api: Api, url: str, repeats: int, db: Path) -> dict[str, Any]:
    """``repeats`` times, alternating: the bare client, then orderwatch's first full poll into an empty store (a new
    database file each time); medians and their ratio."""
    src = source(api, url)
    bare_runs: list[Timed] = []
    ow_runs: list[Timed] = []
    orders = 0
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32, max_keepalive_connections=16)) as client:
        await bare_fetch(client, src)  # connections opened and the server warm, as for every run after it
        for r in range(repeats):
            with timed() as t_bare:
                seen = await bare_fetch(client, src)
            path = db / f"baseline-{api}-{os.getpid()}-{r}.db"
            store = Store.open(path)
            pool = Clients()
            with timed() as t_ow:
                res = await Poller(store, pool).poll(src, full=True)
            await pool.aclose()
            store.close()
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
            assert res.ok and res.baseline and res.orders == seen, (res.error, res.orders, seen)
            orders = seen
            bare_runs.append(t_bare)
            ow_runs.append(t_ow)
    bare_wall = statistics.median(t.wall for t in bare_runs)
    ow_wall = statistics.median(t.wall for t in ow_runs)
    return {
        "api": api,
        "orders": orders,
        "bare": {"wall": bare_wall, "cpu": statistics.median(t.cpu for t in bare_runs)},
        "orderwatch": {"wall": ow_wall, "cpu": statistics.median(t.cpu for t in ow_runs)},
        "wall_ratio": ow_wall / bare_wall,
        "max_rss_mb": max_rss_mb(),
    }


def main() -> int:
    """Run one measurement and emit its result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job", choices=["diffstore", "requests", "fullpoll", "baseline"])
    parser.add_argument("--api", choices=["ace", "lsky"], default="ace")
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default="")
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    quiet_logs()
    api: Api = args.api
    jobs: dict[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]] = {
        "requests": lambda: requests(api, args.orders, args.rounds, args.db),
        "fullpoll": lambda: fullpoll(api, args.url, args.rounds, args.db),
        "baseline": lambda: baseline(api, args.url, args.rounds, args.db),
    }
    if args.job == "diffstore":
        emit(diffstore(args.orders, args.rounds, args.db))
    else:
        emit(anyio.run(jobs[args.job]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

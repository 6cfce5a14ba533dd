"""What a poll costs to report every change, as a share of a full sweep — every event checked against the truth.

    .venv/bin/python benchmarks/detection.py            # 100k orders (and a 500-order account); a few minutes
    .venv/bin/python benchmarks/detection.py --quick    # 10k orders

An account in a shop's steady state (``common.populate``: settled history, the newest 2% open) on a simulator in
this process (only requests and bytes are measured, as the simulator counts them). Per API, each scenario starts
from a fresh baseline, makes its changes, and lets the poller choose and run its plan; the events it records must
be exactly the net changes (computed from the simulator's own orders before and after), or the run fails. The cost
is set against a full sweep of the same change: a second store took the same baseline and sweeps in full.

    (i)   1% of orders move on (Ace: open Pending → Paid; Lsky, whose only open state is unpaid: unpaid → paid),
          plus 10 new orders                                                   target <= 5% of a full sweep
    (ii)  the same, plus 10 refunds of settled orders (Ace: Finished → Refunded; Lsky: 10 paid → cancelled and
          3 cancelled orders deleted)                                          target <= 10%
    (iii) heavy churn (5%, 20%, 50% of the orders change)                      target <= a full sweep + 5%
    (iv)  a 500-order account, the (ii) changes scaled down                   target <= a full sweep

Prints one row per (API, scenario) and ``RESULT {json}`` with every figure.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from common import emit, populate, quiet_logs, source

from orderwatch.simulator import Api, SimServer, Simulator
from orderwatch.store import Store
from orderwatch.sweep import Poller, clients

KEY = {"ace": "id", "lsky": "trade_no"}
STATE = {"ace": "state", "lsky": "status"}
LSKY_CANONICAL = {"unpaid": "Pending", "paid": "Paid", "cancelled": "Cancelled"}
Seen = tuple[str, str, str | None, str | None]


def truth(sim: Simulator, api: Api) -> dict[str, str]:
    """Every order of ``api`` with its raw state, now."""
    return {o[KEY[api]]: o[STATE[api]] for o in sim.orders(api)}


def net(api: Api, before: dict[str, str], after: dict[str, str]) -> set[Seen]:
    """The events the change from ``before`` to ``after`` must make."""

    def canonical(raw: str) -> str:
        return LSKY_CANONICAL[raw] if api == "lsky" else raw

    out: set[Seen] = {(k, "vanished", s, None) for k, s in before.items() if k not in after}
    for key, state in after.items():
        old = before.get(key)
        if old is None:
            out.add((key, "appeared", None, state))
        elif canonical(old) != canonical(state):
            out.add((key, "transition", old, state))
    return out


def in_state(sim: Simulator, api: Api, state: str) -> list[str]:
    """Keys of the orders of ``api`` in ``state``."""
    return [k for k, s in truth(sim, api).items() if s == state]


def move_on(sim: Simulator, api: Api, n: int, rng: random.Random) -> None:
    """``n`` open orders move on: Ace Pending → Paid, Lsky unpaid → paid."""
    frm, to = ("Pending", "Paid") if api == "ace" else ("unpaid", "paid")
    for key in rng.sample(in_state(sim, api, frm), min(n, len(in_state(sim, api, frm)))):
        sim.set_state(api, key, to)


def new(sim: Simulator, api: Api, n: int) -> None:
    """``n`` new orders."""
    if api == "ace":
        sim.add_ace(n)
    else:
        sim.add_lsky(n)


def refunds(sim: Simulator, api: Api, n: int, deleted: int, rng: random.Random) -> None:
    """Settled orders change: Ace Finished → Refunded; Lsky paid → cancelled, and cancelled orders deleted."""
    if api == "ace":
        for key in rng.sample(in_state(sim, api, "Finished"), n):
            sim.set_state(api, key, "Refunded")
        return
    cancelled = in_state(sim, api, "cancelled")
    for key in rng.sample(in_state(sim, api, "paid"), n):
        sim.set_state(api, key, "cancelled")
    for key in rng.sample(cancelled, deleted):
        sim.delete(api, key)


def churn(sim: Simulator, api: Api, share: float, rng: random.Random) -> None:
    """A ``share`` of the orders change: new ones, open ones moving on, settled ones changing or going."""
    n = int(len(sim.orders(api)) * share)
    new(sim, api, n // 4)
    move_on(sim, api, n // 4, rng)
    refunds(sim, api, n // 2, n // 20 if api == "lsky" else 0, rng)


@dataclass(frozen=True)
class Scenario:
    """A named change of an account of ``orders`` orders, and its target share of a full sweep's requests."""

    name: str
    orders: int
    target: float
    moved: int = 0  # open orders that move on
    new: int = 0
    refunds: int = 0  # settled orders that change (Ace Finished -> Refunded, Lsky paid -> cancelled)
    deleted: int = 0  # Lsky cancelled orders deleted
    churn: float = 0.0  # a share of all orders changing

    def change(self, sim: Simulator, api: Api, rng: random.Random) -> None:
        """Make this scenario's changes."""
        move_on(sim, api, self.moved, rng)
        new(sim, api, self.new)
        refunds(sim, api, self.refunds, self.deleted if api == "lsky" else 0, rng)
        if self.churn:
            churn(sim, api, self.churn, rng)


def scenarios(n: int) -> list[Scenario]:
    """The scenarios at ``n`` orders."""
    return [
        Scenario("(i) 1% move on + 10 new", n, 0.05, moved=n // 100, new=10),
        Scenario("(ii) (i) + 10 refunds", n, 0.10, moved=n // 100, new=10, refunds=10, deleted=3),
        *(Scenario(f"(iii) {share:.0%} churn", n, 1.05, churn=share) for share in (0.05, 0.2, 0.5)),
        Scenario("(iv) 500 orders, (ii)'s changes", 500, 1.0, moved=5, new=1, refunds=1, deleted=1),
    ]


async def measure(api: Api, case: Scenario, db: Path) -> dict[str, Any]:
    """One scenario: two stores take the same baseline; after the change, one poller chooses its plan (checked
    against the truth) and the other sweeps in full, each counted as the simulator sees it."""
    rng = random.Random(7)
    sim = Simulator(seed=7, max_page_size=100)
    populate(sim, api, case.orders, seed=7)
    mine, sweeping = (Store.open(db / f"{api}-{abs(hash(case.name))}-{case.orders}-{i}.db") for i in (0, 1))
    try:
        with SimServer(sim) as server:
            src = source(api, server.url)
            async with clients() as pool:
                poller, full_poller = Poller(mine, pool), Poller(sweeping, pool)
                for p in (poller, full_poller):
                    base = await p.poll(src, full=True)
                    assert base.ok and base.baseline, base.error
                before = truth(sim, api)
                case.change(sim, api, rng)
                after = truth(sim, api)
                sim.reset_stats()
                result = await poller.poll(src)
                requests, size = sim.requests(api), sim.bytes(api)
                got = {(e.order_id, e.kind, e.raw_from, e.raw_to) for e in result.events}
                exact = got == net(api, before, after) and len(got) == len(result.events)
                sim.reset_stats()
                full = await full_poller.poll(src, full=True)
                assert full.ok and len(full.events) == len(result.events), (full.error, len(full.events))
                full_requests, full_bytes = sim.requests(api), sim.bytes(api)
    finally:
        mine.close()
        sweeping.close()
    return {
        "api": api,
        "scenario": case.name,
        "orders": case.orders,
        "mode": result.mode,
        "ok": result.ok,
        "exact": exact,
        "events": len(result.events),
        "requests": requests,
        "bytes": size,
        "full_requests": full_requests,
        "full_bytes": full_bytes,
        "share": requests / full_requests,
        "target": case.target,
    }


async def main_async(n: int) -> list[dict[str, Any]]:
    """Every scenario for both APIs."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="orderwatch-detection-") as tmp:
        apis: tuple[Api, ...] = ("ace", "lsky")
        for api in apis:
            for case in scenarios(n):
                row = await measure(api, case, Path(tmp))
                rows.append(row)
                verdict = "ok" if row["exact"] and row["share"] <= row["target"] else "MISS"
                print(
                    f"  {api:4}  {row['scenario']:32} {row['mode']:11} {row['requests']:5} vs {row['full_requests']:5}"
                    f" requests ({row['share']:6.1%}, target <= {row['target']:.0%}),"
                    f" {row['bytes'] / 1e6:6.2f} vs {row['full_bytes'] / 1e6:6.1f} MB,"
                    f" {row['events']} events {'exact' if row['exact'] else 'WRONG'}: {verdict}",
                    flush=True,
                )
    return rows


def main() -> int:
    """Run the scenarios and print them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10k orders instead of 100k")
    args = parser.parse_args()
    quiet_logs()
    rows = anyio.run(main_async, 10_000 if args.quick else 100_000)
    emit({"rows": rows})
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Helpers shared by the benchmark processes: populations, churn, sources, measurements and the result protocol."""

from __future__ import annotations

import random
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import orjson
import structlog

from orderwatch.simulator import TRANSITIONS, Api, Simulator
from orderwatch.sources import Source, make_source

KIND: Final = {"ace": "acedata", "lsky": "lsky"}
TOKEN: Final = {"ace": "ace-token", "lsky": "lsky-token"}  # the simulator's default (fake) tokens
# A realistic account: old orders are settled; only the newest few are still open.
CLOSED_MIX: Final[dict[str, tuple[tuple[str, int], ...]]] = {
    "ace": (("Finished", 60), ("Expired", 25), ("Failed", 10), ("Refunded", 5)),
    "lsky": (("paid", 55), ("cancelled", 45)),
}
OPEN_MIX: Final[dict[str, tuple[tuple[str, int], ...]]] = {
    "ace": (("Pending", 60), ("Paid", 40)),
    "lsky": (("unpaid", 100),),
}
OPEN_FRACTION: Final = 0.02
RESULT: Final = "RESULT "


def quiet_logs() -> None:
    """Only warnings from orderwatch's structlog loggers (a poll logs one info line; it would clutter stdout)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))


def emit(result: dict[str, Any]) -> None:
    """Hand a worker's result to the parent: one line ``RESULT {json}`` on stdout."""
    sys.stdout.write(RESULT + orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


def add(sim: Simulator, api: Api, n: int, state: str) -> list[str]:
    """Create ``n`` orders of ``api`` in ``state``."""
    return sim.add_ace(n, state=state) if api == "ace" else sim.add_lsky(n, status=state)


def populate(sim: Simulator, api: Api, n: int, *, seed: int = 1, open_fraction: float = OPEN_FRACTION) -> None:
    """``n`` orders of ``api``: settled history (closed states, mixed), then the newest ``open_fraction`` open."""
    rng = random.Random(seed)
    n_open = int(n * open_fraction)
    for mix, count in ((CLOSED_MIX[api], n - n_open), (OPEN_MIX[api], n_open)):
        states = [s for s, _ in mix]
        weights = [w for _, w in mix]
        done = 0
        while done < count:
            batch = min(10, count - done)
            add(sim, api, batch, rng.choices(states, weights)[0])
            done += batch


def churn(sim: Simulator, api: Api, n: int, rng: random.Random) -> int:
    """``n`` changes to ``api``: a third new orders, the rest open orders moving on (legal moves), plus a few
    settled orders changing (Ace: Finished → Refunded) or going away (Lsky: cancelled deleted). Returns ``n``."""
    open_states = [s for s, _ in OPEN_MIX[api]]
    state_key = "state" if api == "ace" else "status"
    key_field = "id" if api == "ace" else "trade_no"
    orders = sim.orders(api)
    open_keys = [o[key_field] for o in orders if o[state_key] in open_states]
    settled = [o[key_field] for o in orders[-5 * len(open_keys) - 100 :] if o[state_key] in ("Finished", "cancelled")]
    made = 0
    while made < n:
        roll = rng.random()
        if roll < 0.33 or not open_keys:
            add(sim, api, 1, open_states[0])
        elif roll < 0.95 or not settled:
            key = open_keys.pop(rng.randrange(len(open_keys)))
            state = sim.state_of(api, key)
            if state is None or not TRANSITIONS[api][state]:
                continue
            sim.set_state(api, key, rng.choice(TRANSITIONS[api][state]))
        else:
            key = settled.pop(rng.randrange(len(settled)))
            if api == "ace":
                sim.set_state(api, key, "Refunded")
            else:
                sim.delete(api, key)
        made += 1
    return n


def source(api: Api, url: str, *, page_size: int = 100, name: str | None = None) -> Source:
    """A source for the simulated ``api`` at ``url``."""
    return make_source(
        name=name or api,
        kind=KIND[api],
        base_url=url,
        token=TOKEN[api],
        page_size=page_size,
        timeout=60.0,
        max_pages=100_000,
    )


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def max_rss_mb() -> float:
    """Peak resident set size of this process, in MB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Timed:
    """Wall and CPU seconds of one measured block."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def timed() -> Iterator[Timed]:
    """Measure the wall time and this process's CPU time of the ``with`` block."""
    out = Timed()
    wall, cpu = time.perf_counter(), cpu_seconds()
    try:
        yield out
    finally:
        out.wall, out.cpu = time.perf_counter() - wall, cpu_seconds() - cpu

"""The simulator in its own process, so the client's CPU time and memory are measured apart from the server's.

    python benchmarks/server.py --api ace --orders 100000

Populates the simulator (settled history, the newest 2% open), serves it on 127.0.0.1, prints ``READY <url>`` and
serves until its standard input is closed. Nothing changes while it serves.
"""

from __future__ import annotations

import argparse
import sys
import time

from common import populate

from orderwatch.simulator import SimServer, Simulator


def main() -> int:
    """Serve a populated simulator until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", choices=["ace", "lsky"], required=True)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--page", type=int, default=100, help="the server's largest page")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    sim = Simulator(seed=args.seed, max_page_size=args.page)
    populate(sim, args.api, args.orders, seed=args.seed)
    with SimServer(sim) as server:
        print(f"READY {server.url} {time.perf_counter() - started:.1f}", flush=True)
        sys.stdin.read()  # until the parent closes our stdin
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

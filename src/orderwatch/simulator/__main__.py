"""``python -m orderwatch.simulator``: serve both simulated APIs until Ctrl-C, changing orders on a timer."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Sequence

from orderwatch.simulator.server import SimServer, run_clock
from orderwatch.simulator.state import Simulator


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator standalone; print its URL and the (fake) tokens; stop cleanly on Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m orderwatch.simulator", description="Serve simulated Ace and Lsky orders APIs on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--orders", type=int, default=50, help="orders created per API at start")
    parser.add_argument("--step-every", type=float, default=2.0, help="seconds between two random changes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sim = Simulator(seed=args.seed)
    sim.add_ace(args.orders)
    sim.add_lsky(args.orders)
    sim.step(args.orders)
    stop = threading.Event()
    # Ctrl-C and SIGTERM only set the event: a KeyboardInterrupt raised at an arbitrary point of the main thread
    # (inside a lock wait, say) once left the simulator hanging on its way out.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with SimServer(sim, args.host, args.port) as server:
        run_clock(sim, args.step_every, stop)
        print(f"orderwatch simulator at {server.url}", flush=True)
        print(f"  ace:  {server.url}/api/v1/orders/     token: ace-token", flush=True)
        print(f"  lsky: {server.url}/api/v2/user/orders  token: lsky-token", flush=True)
        while not stop.is_set():
            time.sleep(0.2)  # a signal interrupts the sleep; its handler sets ``stop``
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

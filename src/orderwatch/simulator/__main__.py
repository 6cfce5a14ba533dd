"""``python -m orderwatch.simulator``: serve both simulated APIs until Ctrl-C, changing orders on a timer."""

from __future__ import annotations

import argparse
import signal
import textwrap
import threading
import time
from collections.abc import Sequence

from orderwatch.simulator.conventions import Conventions
from orderwatch.simulator.server import SimServer, run_clock
from orderwatch.simulator.state import Simulator


def _conventions_help() -> str:
    """The ``--help`` epilog: every switch and its values, each with the real server that answers so."""
    lines = [
        "conventions (--convention NAME=VALUE; NAME may drop its ace_/lsky_ prefix to set that switch on every API",
        "that has VALUE, e.g. detail=none, count=low; the first value of each switch is the default):",
    ]
    for name, values in Conventions.switches().items():
        lines.append(f"  {name}")
        for value, meaning in values.items():
            lines.extend(textwrap.wrap(meaning, 110, initial_indent=f"    {value:<12} ", subsequent_indent=" " * 17))
    lines.append("presets (--preset NAME, applied in order, then --convention items):")
    for name, make in Conventions.presets().items():
        lines.append(f"  {name:<14} {make()}")
    return "\n".join(lines)


def _conventions(parser: argparse.ArgumentParser, presets: Sequence[str], items: Sequence[str]) -> Conventions:
    """The presets merged in order, then the ``NAME=VALUE`` items; a bad item is a usage error (exit 2)."""
    conventions = Conventions()
    for name in presets:
        conventions = conventions.merged(Conventions.presets()[name]())
    try:
        return conventions.with_switches(items)
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator standalone; print its URL and the (fake) tokens; stop cleanly on Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m orderwatch.simulator",
        description="Serve simulated Ace and Lsky orders APIs on loopback.",
        epilog=_conventions_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--orders", type=int, default=50, help="orders created per API at start")
    parser.add_argument("--step-every", type=float, default=2.0, help="seconds between two random changes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--preset", action="append", default=[], choices=list(Conventions.presets()), help="a bundle of conventions"
    )
    parser.add_argument(
        "--convention", action="append", default=[], metavar="NAME=VALUE", help="one switch (see below); repeatable"
    )
    args = parser.parse_args(argv)
    conventions = _conventions(parser, args.preset, args.convention)
    sim = Simulator(seed=args.seed, conventions=conventions)
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
        print(f"orderwatch simulator at {server.url} (conventions: {conventions})", flush=True)
        print(f"  ace:  {server.url}/api/v1/orders/     token: ace-token", flush=True)
        print(f"  lsky: {server.url}/api/v2/user/orders  token: lsky-token", flush=True)
        while not stop.is_set():
            time.sleep(0.2)  # a signal interrupts the sleep; its handler sets ``stop``
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A real HTTP server on loopback speaking both orders APIs (Ace Data Cloud and Lsky Pro+), for tests and the demo.

``Simulator`` holds the seeded, thread-safe state of both APIs and records every change in ``history``;
``SimServer`` serves it (Ace at ``/api/v1/orders/``, Lsky at ``/api/v2/user/orders``); ``run_clock`` changes
orders on a timer. Faults (HTTP errors, HTML, 429, truncated JSON, error bodies, slowness, rows moving while a
client pages, 401) come at random (``sim.faults.rate``/``kinds``) or one-shot (``sim.inject``).

    state.py   the orders, their state machines, faults, statistics, request dispatch
    wire.py    query parsing and response bodies, as the real servers write them
    server.py  the HTTP server and the demo clock
"""

from __future__ import annotations

from orderwatch.simulator.server import SimServer, run_clock
from orderwatch.simulator.state import (
    ACE_PAY_WAYS,
    ACE_TRANSITIONS,
    FAULT_KINDS,
    LSKY_TRANSITIONS,
    TRANSITIONS,
    Api,
    Faults,
    SimChange,
    Simulator,
)
from orderwatch.simulator.wire import SimResponse

__all__ = [
    "ACE_PAY_WAYS",
    "ACE_TRANSITIONS",
    "FAULT_KINDS",
    "LSKY_TRANSITIONS",
    "TRANSITIONS",
    "Api",
    "Faults",
    "SimChange",
    "SimResponse",
    "SimServer",
    "Simulator",
    "run_clock",
]

"""A real HTTP server on loopback speaking both orders APIs (Ace Data Cloud and Lsky Pro+), for tests and the demo.

``Simulator`` holds the seeded, thread-safe state of both APIs and records every change in ``history``;
``SimServer`` serves it (Ace at ``/api/v1/orders/``, Lsky at ``/api/v2/user/orders``); ``run_clock`` changes
orders on a timer. Faults (HTTP errors, HTML, 429, truncated JSON, error bodies, slowness, rows moving while a
client pages, 401) come at random (``sim.faults.rate``/``kinds``) or one-shot (``sim.inject``). ``Conventions``
switch how the servers read requests and write answers where real servers of these APIs differ
(``Simulator(conventions=...)``, or ``sim.conventions = replace(sim.conventions, ...)`` while serving).

    conventions.py  the switches, their values (each naming the real server that answers so) and presets
    state.py        the orders, their state machines, faults, statistics; frames each request
    tables.py       one API's orders, indexed, and how a list query selects from them
    queries.py      what a list request asks for, as a server under given conventions reads it
    routes.py       which endpoint a path names, and what each endpoint answers
    wire.py         response bodies, as the real servers write them
    server.py       the HTTP server and the demo clock
"""

from __future__ import annotations

from orderwatch.simulator.conventions import Conventions
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
    "Conventions",
    "Faults",
    "SimChange",
    "SimResponse",
    "SimServer",
    "Simulator",
    "run_clock",
]

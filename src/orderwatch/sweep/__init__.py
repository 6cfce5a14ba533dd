"""The poll pipeline: the only importer of httpx and stamina. Its public face is what the daemon, the CLI and the
benchmarks use.

    poller.py     one poll end to end: choose the plan, sweep or reconcile, diff, record
    plan.py       pure: what an incremental poll asks next, from the snapshot and the server's answers
    reconcile.py  runs a plan: remote questions over HTTP, local ones against the store
    local.py      the snapshot's side of a plan (what it starts from, its answers from the store)
    paging.py     a full sweep's paging, and whether it proves what it did not see
    full.py       where a full sweep's pages go: diffed against the store as they stream in
    http.py       clients, one GET with its limits, redirects, errors and retries
"""

from __future__ import annotations

from orderwatch.sweep.http import Clients, Tally, check_transport, clients, fetch_page
from orderwatch.sweep.poller import Outcome, Poller, PollResult, poll_budget

__all__ = [
    "Clients",
    "Outcome",
    "PollResult",
    "Poller",
    "Tally",
    "check_transport",
    "clients",
    "fetch_page",
    "poll_budget",
]

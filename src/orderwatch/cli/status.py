"""``orderwatch status``: per source the last success, last error, failures, next poll and orders; the outbox depth."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orderwatch.config import Config
    from orderwatch.store import SourceState, Store

COLUMNS = ("source", "last success", "last error", "failures", "next poll", "orders")


def _when(ts: str | None) -> str:
    """A stored timestamp to the second (``2026-11-22T10:00:00Z``); empty when unknown."""
    return f"{ts[:19]}Z" if ts else ""


def _row(name: str, state: SourceState | None, configured: bool) -> dict[str, object]:
    if state is None:
        return {
            "source": name,
            "last success": "never",
            "last error": "",
            "failures": 0,
            "next poll": "",
            "orders": 0,
        }
    error = f"{_when(state.last_error_at)} {state.last_error}".strip() if state.last_error else ""
    return {
        "source": name if configured else f"{name} (not configured)",
        "last success": _when(state.last_success_at) or "never",
        "last error": error,
        "failures": state.failures,
        "next poll": _when(state.next_poll_at) if configured else "",
        "orders": state.orders,
    }


def source_status(conf: Config, store: Store) -> tuple[list[dict[str, object]], int]:
    """One row per configured source (then sources only the database still knows), and the outbox depth.

    ``next poll`` is empty while no daemon is running (it clears it on exit) or before its first schedule.
    """
    states = {s.name: s for s in store.source_states()}
    rows = [_row(name, states.get(name), True) for name in conf.sources]
    rows += [_row(name, state, False) for name, state in states.items() if name not in conf.sources]
    return rows, store.outbox_depth()

"""Incremental polls: between full sweeps, fetch only what can have changed.

1. **New orders** — newest-first pages of the whole list, down to the first page whose orders are all known
   (that page is the overlap).
2. **Open orders** — the list filtered to the source's open states (Ace ``state=…``, Lsky ``q=status:=:…``).
3. **Orders that left the open set** — known open orders absent from (2): up to ``DETAIL_MAX`` are re-read from the
   detail endpoint; more are found in the list filtered to the other states, newest first, down to the oldest of
   them. One that cannot be found (deleted, or a 404) asks for a full sweep on the next poll.

An incremental observation is never *full*, so it never reports ``vanished`` nor sets a baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import httpx
import orjson

from orderwatch.core.model import Known, Observation, Order, Page
from orderwatch.errors import SourceError
from orderwatch.sources import Source, adapter_for
from orderwatch.sweep import fetch

DETAIL_MAX = 20


@dataclass(frozen=True, slots=True)
class Incremental:
    """An incremental observation, and whether the next poll should be a full sweep."""

    observation: Observation
    needs_full: bool
    reason: str | None = None


def raw_states(src: Source, canonical: set[str]) -> list[str]:
    """The raw states, spelled as the API spells them, that map to ``canonical`` states (Ace ``Pending``, Lsky
    ``unpaid``); a raw state the user mapped (``states = { "0" = … }``) is sent as written."""
    spelled = {raw.casefold(): raw for raw in adapter_for(src).raw_states}
    return sorted({spelled.get(raw, raw) for raw, state in src.states.items() if state in canonical})


def supports_incremental(src: Source) -> bool:
    """False when the user's own params filter by state (the open-state filter would replace theirs)."""
    return src.incremental and not adapter_for(src).filters_state(src.params)


async def observe(
    client: httpx.AsyncClient,
    src: Source,
    open_known: Mapping[str, Known],
    *,
    is_known: Callable[[Sequence[str]], Collection[str]],
    created_at: Callable[[Sequence[str]], Mapping[str, str]],
) -> Incremental:
    """One incremental poll of ``src``. ``open_known``: the snapshot's orders in open states; ``is_known(keys)``:
    those of ``keys`` the snapshot has. Raises ``SourceError`` if not even the first request worked."""
    tally = fetch.Tally()
    reasons: list[str] = []
    open_canonical = set(src.open_states)

    def all_known(page: Page) -> bool:
        return len(is_known([o.key for o in page.orders])) == len({o.key for o in page.orders})

    newest = await fetch.sweep(client, src, stop=all_known, concurrency=1, tally=tally)
    orders: dict[str, Order] = dict(newest.orders)
    complete = newest.complete
    if newest.reason:
        reasons.append(f"new orders: {newest.reason}")

    open_raw = raw_states(src, open_canonical)
    if open_raw:
        try:
            open_set = await fetch.sweep(client, src, states=open_raw, tally=tally)
        except SourceError as exc:
            open_set = None
            complete = False
            reasons.append(f"open orders: {exc.message}")
        if open_set is not None:
            orders.update(open_set.orders)
            complete &= open_set.complete
            if open_set.reason:
                reasons.append(f"open orders: {open_set.reason}")

    left = [k for k in open_known if k not in orders]
    needs_full = False
    if left and complete:
        found, missing, ok = await _find_left(client, src, left, open_canonical, created_at, tally)
        orders.update(found)
        complete &= ok
        if missing:
            needs_full = True
            reasons.append(f"{len(missing)} open order(s) not found: a full sweep will settle them")

    observation = Observation(
        source=src.name,
        orders=orders,
        complete=complete,
        consistent=False,
        full=False,
        reason="; ".join(reasons) or None,
        requests=tally.requests,
        bytes=tally.bytes,
    )
    return Incremental(observation, needs_full, observation.reason)


async def _find_left(
    client: httpx.AsyncClient,
    src: Source,
    left: list[str],
    open_canonical: set[str],
    created_at: Callable[[Sequence[str]], Mapping[str, str]],
    tally: fetch.Tally,
) -> tuple[dict[str, Order], list[str], bool]:
    """Find the current state of orders that left the open set: (found, missing, complete)."""
    found: dict[str, Order] = {}
    if len(left) <= DETAIL_MAX:
        missing: list[str] = []
        for key in left:
            try:
                order = await fetch.fetch_detail(client, src, key, tally=tally)
            except SourceError:
                return found, [], False
            if order is None:
                missing.append(key)
            else:
                found[key] = order
        return found, missing, True

    wanted = set(left)
    floor = min(created_at(left).values(), default="")
    closed_raw = raw_states(src, set(src.states.values()) - open_canonical)

    def done(page: Page) -> bool:
        for order in page.orders:
            wanted.discard(order.key)
        if not wanted or not page.orders:
            return True
        oldest = adapter_for(src).created_at(orjson.loads(page.orders[-1].raw_json))
        return bool(floor) and oldest is not None and oldest < floor

    try:
        closed = await fetch.sweep(client, src, states=closed_raw, stop=done, concurrency=1, tally=tally)
    except SourceError:
        return found, [], False
    found.update({k: o for k, o in closed.orders.items() if k in set(left)})
    return found, sorted(wanted), closed.complete

"""The diff engine: previous snapshot + observation → events and the rows to write. Pure: no I/O, no clock.

Rules (CONTRACT.md, "Events"):

- Until a source has a baseline, observations are stored silently; the first sweep that proves absence (full,
  complete, consistent) becomes the baseline (the poller may also settle for a complete one: ``BASELINE_TRIES``).
- After that: an order not in the snapshot → ``appeared``; a changed canonical state → ``transition`` (raw states
  kept); an order missing from a sweep that proves absence, or proven absent on its own (``Observation.gone``: a
  checked detail endpoint's 404, a part of the list listed completely) → ``vanished``. Partial or failed sweeps
  infer nothing from what they did not see.
- Rows are written only when their content hash (or canonical state) changed.
"""

from __future__ import annotations

from collections.abc import Mapping

from orderwatch.core.model import Change, Event, Known, Observation, Order


def _appeared(source: str, order: Order, now: str) -> Event:
    return Event(source, order.key, "appeared", None, order.state, None, order.raw_state, now, order.raw_json)


def _transition(source: str, old: Known, order: Order, now: str) -> Event:
    return Event(
        source,
        order.key,
        "transition",
        old.state,
        order.state,
        old.raw_state,
        order.raw_state,
        now,
        order.raw_json,
    )


def _vanished(source: str, key: str, old: Known, now: str) -> Event:
    # order_json is None: the store fills in the last stored copy of the order in the same transaction
    return Event(source, key, "vanished", old.state, None, old.raw_state, None, now, None)


def diff(previous: Mapping[str, Known], observation: Observation, *, baselined: bool, now: str) -> Change:
    """What ``observation`` changes in ``previous``. ``now`` is the detection time stamped on events."""
    source = observation.source
    events: list[Event] = []
    upserts: list[Order] = []
    unchanged = 0
    new = 0
    get = previous.get
    for key, order in observation.orders.items():
        old = get(key)
        if old is None:
            new += 1
            upserts.append(order)
            if baselined:
                events.append(_appeared(source, order, now))
        elif old.digest != order.digest or old.state != order.state:
            upserts.append(order)
            if baselined and old.state != order.state:
                events.append(_transition(source, old, order, now))
        else:
            unchanged += 1

    removals: list[str] = []
    known_seen = len(observation.orders) - new
    seen = observation.orders
    if observation.proves_absence and known_seen != len(previous):
        removals = sorted(key for key in previous if key not in seen)
    elif observation.gone:
        removals = sorted(key for key in observation.gone if key in previous and key not in seen)
    if baselined:
        events.extend(_vanished(source, key, previous[key], now) for key in removals)

    return Change(
        events=tuple(events),
        upserts=tuple(upserts),
        removals=tuple(removals),
        baseline=not baselined and observation.proves_absence,
        unchanged=unchanged,
    )


def apply(previous: Mapping[str, Known], change: Change) -> dict[str, Known]:
    """The snapshot after ``change``: what the store does, as a pure function (used by the property tests)."""
    after = dict(previous)
    for order in change.upserts:
        after[order.key] = Known(order.raw_state, order.state, order.digest)
    for key in change.removals:
        after.pop(key, None)
    return after

"""Property and example tests of the pure diff engine."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from orderwatch.core.diff import apply, diff
from orderwatch.core.model import CANONICAL_STATES, Known, Observation, Order

NOW = "2026-11-22T10:00:00.000000Z"
keys = st.text(alphabet="abcdef0123456789", min_size=1, max_size=4)
states = st.sampled_from(CANONICAL_STATES)


def order(key: str, state: str, extra: int = 0) -> Order:
    return Order.build(key, state.lower(), state, {"id": key, "state": state.lower(), "extra": extra})


def known(o: Order) -> Known:
    return Known(o.raw_state, o.state, o.digest)


def obs(orders: Mapping[str, Order], *, complete: bool = True, consistent: bool = True) -> Observation:
    return Observation("src", dict(orders), complete=complete, consistent=consistent)


order_maps = st.dictionaries(keys, st.tuples(states, st.integers(0, 2))).map(
    lambda d: {k: order(k, s, e) for k, (s, e) in d.items()}
)


@given(order_maps)
def test_diff_of_a_snapshot_with_itself_is_empty(orders: dict[str, Order]) -> None:
    """Diffing a snapshot against an identical complete sweep makes no events and writes no rows."""
    previous = {k: known(o) for k, o in orders.items()}
    change = diff(previous, obs(orders), baselined=True, now=NOW)
    assert change.events == ()
    assert change.upserts == ()
    assert change.removals == ()
    assert change.unchanged == len(orders)


@given(order_maps, order_maps, st.booleans(), st.booleans())
def test_applying_the_change_gives_the_new_snapshot(
    before: dict[str, Order], after: dict[str, Order], complete: bool, consistent: bool
) -> None:
    """prev + change == the observation (plus, for sweeps that prove nothing, the unseen previous rows)."""
    previous = {k: known(o) for k, o in before.items()}
    observation = obs(after, complete=complete, consistent=consistent)
    result = apply(previous, diff(previous, observation, baselined=True, now=NOW))
    expected = {k: known(o) for k, o in after.items()}
    if not observation.proves_absence:
        expected = {**previous, **expected}
    assert result == expected


@given(order_maps, order_maps, st.sampled_from([(False, False), (True, False), (False, True)]))
def test_a_sweep_that_proves_nothing_never_reports_vanished(
    before: dict[str, Order], after: dict[str, Order], flags: tuple[bool, bool]
) -> None:
    """An incomplete or inconsistent observation never yields a vanished event nor removes a row."""
    previous = {k: known(o) for k, o in before.items()}
    change = diff(previous, obs(after, complete=flags[0], consistent=flags[1]), baselined=True, now=NOW)
    assert all(e.kind != "vanished" for e in change.events)
    assert change.removals == ()


@given(order_maps, order_maps)
def test_every_state_change_is_exactly_one_transition_with_raw_states(
    before: dict[str, Order], after: dict[str, Order]
) -> None:
    """Each order whose canonical state changed yields one transition carrying old and new raw states."""
    previous = {k: known(o) for k, o in before.items()}
    change = diff(previous, obs(after), baselined=True, now=NOW)
    transitions = {e.order_id: e for e in change.events if e.kind == "transition"}
    changed = {k for k in after if k in before and before[k].state != after[k].state}
    assert set(transitions) == changed
    for key, ev in transitions.items():
        assert (ev.from_state, ev.to_state) == (before[key].state, after[key].state)
        assert (ev.raw_from, ev.raw_to) == (before[key].raw_state, after[key].raw_state)
    assert {e.order_id for e in change.events if e.kind == "appeared"} == set(after) - set(before)
    assert {e.order_id for e in change.events if e.kind == "vanished"} == set(before) - set(after)


@given(order_maps)
def test_the_baseline_is_silent(orders: dict[str, Order]) -> None:
    """Before a baseline exists, a complete sweep stores every order, makes no events, and becomes the baseline."""
    change = diff({}, obs(orders), baselined=False, now=NOW)
    assert change.events == ()
    assert {o.key for o in change.upserts} == set(orders)
    assert change.baseline is True


def test_an_incomplete_first_sweep_is_stored_but_is_not_the_baseline() -> None:
    """A partial first sweep keeps what it saw silently and leaves the baseline for a complete sweep."""
    change = diff({}, obs({"a": order("a", "Paid")}, complete=False), baselined=False, now=NOW)
    assert change.events == ()
    assert [o.key for o in change.upserts] == ["a"]
    assert change.baseline is False


def test_content_change_without_state_change_rewrites_the_row_silently() -> None:
    """A changed field other than the state updates the stored row but makes no event."""
    old = order("a", "Paid", extra=1)
    new = order("a", "Paid", extra=2)
    change = diff({"a": known(old)}, obs({"a": new}), baselined=True, now=NOW)
    assert change.events == ()
    assert change.upserts == (new,)


def test_vanished_event_carries_the_last_known_state() -> None:
    """An order missing from a complete, consistent sweep is reported vanished from its last state."""
    old = order("gone", "Cancelled")
    change = diff({"gone": known(old)}, obs({}), baselined=True, now=NOW)
    (event,) = change.events
    assert (event.kind, event.order_id, event.from_state, event.raw_from, event.to_state) == (
        "vanished",
        "gone",
        "Cancelled",
        "cancelled",
        None,
    )
    assert change.removals == ("gone",)

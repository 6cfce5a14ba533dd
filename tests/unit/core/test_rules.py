"""Routing of events to channels: rule matching, once per channel, digests."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from orderwatch.core.model import CANONICAL_STATES, EVENT_KINDS, Event, EventKind
from orderwatch.core.rules import Delivery, Rule, matches, route


def transition(frm: str, to: str, source: str = "ace", order_id: str = "o1") -> Event:
    """A transition event."""
    return Event(source, order_id, "transition", frm, to, frm, to, "2026-01-01T00:00:00Z")


def appeared(state: str, source: str = "ace") -> Event:
    """An appeared event (no from-state)."""
    return Event(source, "o2", "appeared", None, state, None, state, "2026-01-01T00:00:00Z")


def vanished(state: str, source: str = "images") -> Event:
    """A vanished event (no to-state)."""
    return Event(source, "o3", "vanished", state, None, state, None, "2026-01-01T00:00:00Z")


def test_to_states_compare_case_insensitively() -> None:
    """A rule's `to` list matches the canonical to-state in any case."""
    rule = Rule("lost", ("ops",), to=("expired", "FAILED"))
    assert matches(rule, transition("Pending", "Expired"))
    assert matches(rule, transition("Paid", "Failed"))
    assert not matches(rule, transition("Pending", "Paid"))


def test_from_states_and_sources_filter() -> None:
    """`from_states` and `sources` narrow a rule; empty lists mean any."""
    rule = Rule("refunds", ("finance",), from_states=("paid", "Finished"), to=("Refunded",), sources=("ace",))
    assert matches(rule, transition("Finished", "Refunded"))
    assert not matches(rule, transition("Pending", "Refunded"))
    assert not matches(rule, transition("Paid", "Refunded", source="images"))
    assert matches(Rule("any", ("ops",)), transition("Pending", "Paid", source="images"))


def test_events_default_to_transitions_only() -> None:
    """A rule without `events` matches transitions, not appeared or vanished events."""
    rule = Rule("all", ("ops",), events=())
    assert matches(rule, transition("Pending", "Paid"))
    assert not matches(rule, appeared("Pending"))
    assert not matches(rule, vanished("Cancelled"))


def test_appeared_matches_to_against_the_state_it_appeared_in() -> None:
    """For `appeared`, `to` is the state the order appeared in, and any `from_states` excludes it."""
    rule = Rule("new", ("ops",), events=("appeared",), to=("Pending",))
    assert matches(rule, appeared("Pending"))
    assert not matches(rule, appeared("Paid"))
    assert not matches(Rule("new", ("ops",), events=("appeared",), from_states=("Pending",)), appeared("Pending"))


def test_vanished_matches_from_against_the_last_state() -> None:
    """For `vanished`, `from_states` is the last state seen, and any `to` excludes it."""
    rule = Rule("gone", ("ops",), events=("vanished",), from_states=("cancelled",))
    assert matches(rule, vanished("Cancelled"))
    assert not matches(rule, vanished("Paid"))
    assert not matches(Rule("gone", ("ops",), events=("vanished",), to=("Cancelled",)), vanished("Cancelled"))


def test_first_matching_rule_wins_per_channel_and_every_rule_fires() -> None:
    """An event goes to each channel once, with the first matching rule's name; later rules add other channels."""
    rules = [
        Rule("lost-sales", ("ops",), to=("Expired",)),
        Rule("everything", ("ops", "finance"), to=()),
        Rule("never", ("audit",), to=("Paid",)),
    ]
    got = route([transition("Pending", "Expired")], rules, {})
    assert got == [Delivery("ops", "lost-sales", (0,), False), Delivery("finance", "everything", (0,), False)]


def test_digest_when_a_channel_gets_more_than_its_threshold() -> None:
    """More than digest_over events for one channel → one digest holding all; at the threshold → one each."""
    events = [transition("Pending", "Expired", order_id=f"o{i}") for i in range(4)]
    rules = [Rule("lost", ("ops", "finance"), to=("Expired",))]
    got = route(events, rules, {"ops": 3, "finance": 4})
    digests = [d for d in got if d.digest]
    assert digests == [Delivery("ops", "digest", (0, 1, 2, 3), True)]
    assert [d.event_indexes for d in got if d.channel == "finance"] == [(0,), (1,), (2,), (3,)]
    assert all(d.rule == "lost" for d in got if d.channel == "finance")


def test_channel_without_threshold_never_digests() -> None:
    """A channel missing from digest_over gets one delivery per event however many there are."""
    events = [transition("Pending", "Paid", order_id=f"o{i}") for i in range(30)]
    got = route(events, [Rule("paid", ("ops",), to=("Paid",))], {})
    assert len(got) == 30
    assert not any(d.digest for d in got)


def test_deliveries_follow_event_order() -> None:
    """Deliveries come in event order, and for one event in rule order."""
    events = [transition("Pending", "Paid"), transition("Pending", "Expired"), transition("Paid", "Refunded")]
    rules = [Rule("a", ("x",), to=("Expired", "Refunded")), Rule("b", ("y",))]
    got = route(events, rules, {})
    assert [(d.event_indexes, d.channel) for d in got] == [
        ((0,), "y"),
        ((1,), "x"),
        ((1,), "y"),
        ((2,), "x"),
        ((2,), "y"),
    ]


def test_no_events_or_no_rules_route_nothing() -> None:
    """Nothing to route gives no deliveries."""
    assert route([], [Rule("a", ("x",))], {"x": 0}) == []
    assert route([transition("Pending", "Paid")], [], {}) == []


STATES = st.sampled_from([*CANONICAL_STATES, "weird"])
CHANNELS = st.sampled_from(["ops", "finance", "audit"])


@st.composite
def events_strategy(draw: st.DrawFn) -> Event:
    """Any event of any kind from one of two sources."""
    kind: EventKind = draw(st.sampled_from(EVENT_KINDS))
    source = draw(st.sampled_from(["ace", "images"]))
    frm = None if kind == "appeared" else draw(STATES)
    to = None if kind == "vanished" else draw(STATES)
    order_id = draw(st.sampled_from(["o1", "o2", "2024101416111591729_002"]))
    return Event(source, order_id, kind, frm, to, frm, to, "2026-01-01T00:00:00Z")


RULES = st.builds(
    Rule,
    name=st.sampled_from(["r1", "r2", "r3"]),
    channels=st.lists(CHANNELS, min_size=1, max_size=3).map(tuple),
    events=st.lists(st.sampled_from(["transition", "appeared", "vanished"]), max_size=3).map(tuple),
    from_states=st.lists(STATES.map(str.lower), max_size=2).map(tuple),
    to=st.lists(STATES.map(str.upper), max_size=2).map(tuple),
    sources=st.lists(st.sampled_from(["ace", "images"]), max_size=2).map(tuple),
)


def _expected_pairs(events: Sequence[Event], rules: Sequence[Rule]) -> set[tuple[str, int]]:
    """Every (channel, event index) some matching rule sends to."""
    return {(c, i) for i, e in enumerate(events) for r in rules if matches(r, e) for c in r.channels}


@given(
    st.lists(events_strategy(), max_size=25),
    st.lists(RULES, max_size=4),
    st.dictionaries(CHANNELS, st.integers(min_value=0, max_value=6)),
)
def test_route_properties(events: list[Event], rules: list[Rule], digest_over: dict[str, int]) -> None:
    """Each matching (channel, event) is delivered exactly once; digests exactly when over the threshold."""
    got = route(events, rules, digest_over)
    pairs = [(d.channel, i) for d in got for i in d.event_indexes]
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == _expected_pairs(events, rules)
    for channel in {d.channel for d in got}:
        mine = [d for d in got if d.channel == channel]
        count = sum(len(d.event_indexes) for d in mine)
        over = channel in digest_over and count > digest_over[channel]
        assert all(d.digest == over for d in mine)
        if over:
            assert len(mine) == 1
            assert mine[0].rule == "digest"
            assert list(mine[0].event_indexes) == sorted(mine[0].event_indexes)
        else:
            assert all(len(d.event_indexes) == 1 and d.rule in {"r1", "r2", "r3"} for d in mine)

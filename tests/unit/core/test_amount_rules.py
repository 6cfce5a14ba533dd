"""Rules with min_amount (pure): an event is selected only when its order's amount at the dotted path is enough."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from orderwatch.core.model import Event
from orderwatch.core.rules import Rule, matches


def refund(order: object) -> Event:
    """A Paid → Refunded transition of an order with this JSON."""
    return Event(
        source="ace",
        order_id="o",
        kind="transition",
        from_state="Paid",
        to_state="Refunded",
        raw_from="Paid",
        raw_to="Refunded",
        detected_at="2026-11-23T10:00:00.000000Z",
        order_json=orjson.dumps(order),
        id=1,
    )


BIG = Rule("big-refunds", ("ops",), to=("Refunded",), urgent=True, amount="totals.price", min_amount=Decimal(100))


@pytest.mark.parametrize(
    ("order", "selected"),
    [
        ({"totals": {"price": "250.00"}}, True),
        ({"totals": {"price": 100}}, True),
        ({"totals": {"price": 99.99}}, False),
        ({"totals": {"price": "lots"}}, False),
        ({"totals": {"price": True}}, False),
        ({"totals": {}}, False),
        ({"price": 500}, False),
    ],
)
def test_min_amount_selects_orders_whose_amount_is_at_least_it(order: object, selected: bool) -> None:
    """The amount at the dotted path, a number or numeric text, must be at least min_amount; anything else is not."""
    assert matches(BIG, refund(order)) is selected


def test_min_amount_still_needs_the_rules_other_conditions() -> None:
    """A big amount does not select an event the rule's states do not."""
    paid = Event(
        "ace", "o", "transition", "Pending", "Paid", "Pending", "Paid", "t", orjson.dumps({"totals": {"price": 1e6}})
    )
    assert not matches(BIG, paid)

"""Rendering events to notices: defaults for both API formats, user templates, fallbacks, the sandbox, digests."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from orderwatch.core import render
from orderwatch.core.model import Event, canonical_json
from orderwatch.sources import ADAPTERS

# the order of the Ace Data Cloud seed document (000), as the API returns it
ACE_ORDER: dict[str, Any] = {
    "id": "3f2b8c1e-9d4a-4e6b-8f0a-1c2d3e4f5a6b",
    "user_id": "b87f67c1-b04f-4332-99a1-7a5e651331c6",
    "application_id": "107f8d0f-e465-4a7e-a49e-d633d26f7aa2",
    "package_id": "pkg-uuid",
    "amount": 500,
    "price": 49.99,
    "discount": 1.0,
    "pay_way": "Stripe",
    "pay_id": "pi_xxxxxx",
    "pay_url": "https://checkout.stripe.com/c/pay/cs_test_a1",
    "state": "Expired",
    "remaining_amount": 500,
    "applications": [],
    "packages": [],
    "tags": None,
    "metadata": None,
    "created_at": "2024-06-15T10:00:00.000000Z",
    "updated_at": "2024-06-15T10:05:00.000000Z",
}

# an order of the Lsky Pro+ seed document (002): status paid although canceled_at is set
LSKY_ORDER: dict[str, Any] = {
    "trade_no": "2024101513033419533_002",
    "amount": 0.01,
    "snapshot": {"name": "测试套餐", "intro": "test", "features": ["不限上传次数", "无限空间"], "badge": "促销"},
    "product": {"name": "月卡", "duration": 1, "price": 0.01},
    "pay_method": "",
    "status": "paid",
    "paid_at": None,
    "canceled_at": "2024-10-15T09:15:15.000000Z",
    "created_at": "2024-10-15T05:03:34.000000Z",
    "coupon": None,
}
DETECTED = "2026-11-22T10:00:00.123456Z"


def ace_expired() -> Event:
    """The Ace order going Pending → Expired."""
    return Event(
        "ace", ACE_ORDER["id"], "transition", "Pending", "Expired", "Pending", "Expired", DETECTED,
        canonical_json(ACE_ORDER), 42,
    )  # fmt: skip


def lsky_paid() -> Event:
    """The Lsky order going unpaid → paid (raw states differ from canonical)."""
    return Event(
        "images", LSKY_ORDER["trade_no"], "transition", "Pending", "Paid", "unpaid", "paid", DETECTED,
        canonical_json(LSKY_ORDER), 7,
    )  # fmt: skip


def default(event: Event) -> render.Notice:
    """The default notice of ``event``, with the display lines of its format's adapter."""
    adapter = ADAPTERS["acedata" if event.source == "ace" else "lsky"]
    return render.render_event(event, title=None, body=None, details=adapter.display(render.order_of(event)))


def test_ace_default_title_and_body() -> None:
    """The default for an Ace order names source, short id, change, price in USD, credits, payment, link, times."""
    notice = default(ace_expired())
    assert notice.title == "[ace] order 3f2b8c1e… Pending → Expired"
    assert notice.fallback is None
    lines = notice.body.splitlines()
    assert "Source: ace" in lines
    assert f"Order: {ACE_ORDER['id']}" in lines
    assert "State: Pending → Expired" in lines
    assert "Amount: 49.99 USD (500 credits)" in lines
    assert "Payment: Stripe" in lines
    assert "Link: https://checkout.stripe.com/c/pay/cs_test_a1" in lines
    assert "Created: 2024-06-15T10:00:00.000000Z" in lines
    assert f"Detected: {DETECTED}" in lines


def test_lsky_default_shows_raw_states_yuan_and_product() -> None:
    """The default for a Lsky order shows raw states in brackets, the amount in CNY and the product name."""
    notice = default(lsky_paid())
    assert notice.title == "[images] order 2024101513033419533_002 Pending → Paid"
    lines = notice.body.splitlines()
    assert "State: Pending [unpaid] → Paid [paid]" in lines
    assert "Amount: 0.01 CNY" in lines
    assert "Product: 月卡" in lines
    assert "Cancelled: 2024-10-15T09:15:15.000000Z" in lines
    assert not any(line.startswith("Payment:") for line in lines)  # pay_method "" is left out
    assert not any(line.startswith("Paid:") for line in lines)  # paid_at null is left out


def test_appeared_and_vanished_titles() -> None:
    """Appeared orders read "new order … (State)", vanished ones "order … vanished (was State)"."""
    new = Event(
        "ace", ACE_ORDER["id"], "appeared", None, "Pending", None, "Pending", DETECTED, canonical_json(ACE_ORDER)
    )
    gone = Event("images", "2024101709550281532_002", "vanished", "Cancelled", None, "cancelled", None, DETECTED)
    assert render.render_event(new, title=None, body=None).title == "[ace] new order 3f2b8c1e… (Pending)"
    vanished = render.render_event(gone, title=None, body=None)
    assert vanished.title == "[images] order 2024101709550281532_002 vanished (was Cancelled)"
    assert "State: Cancelled [cancelled] → vanished" in vanished.body.splitlines()


def test_numbers_as_strings_and_missing_product_name() -> None:
    """Prices given as strings show as written; a Lsky order without product name falls back to its snapshot."""
    ace = {**ACE_ORDER, "price": "49.90", "amount": "500", "pay_way": None, "pay_url": None}
    event = Event("ace", "short-id", "transition", "Pending", "Paid", "Pending", "Paid", DETECTED, canonical_json(ace))
    lines = default(event).body.splitlines()
    assert "Amount: 49.90 USD (500 credits)" in lines
    assert not any(line.startswith(("Payment:", "Link:")) for line in lines)
    lsky = {**LSKY_ORDER, "product": None, "amount": "12.5"}
    event = Event("images", "t1", "transition", "Pending", "Paid", "unpaid", "paid", DETECTED, canonical_json(lsky))
    lines = default(event).body.splitlines()
    assert "Amount: 12.5 CNY" in lines
    assert "Product: 测试套餐" in lines


def test_user_templates_get_event_and_order() -> None:
    """User templates see the contract's event fields as `event` and the raw order as `order`."""
    notice = render.render_event(
        ace_expired(),
        title="Refund on {{ event.source }}: {{ order.id }} (#{{ event.id }})",
        body="{{ event.from_state }} → {{ event.to_state }}, {{ order.price }} USD via {{ order.pay_way }}",
    )
    assert notice == render.Notice(
        title=f"Refund on ace: {ACE_ORDER['id']} (#42)", body="Pending → Expired, 49.99 USD via Stripe"
    )


def test_missing_fields_render_empty() -> None:
    """A missing field, and an attribute of a missing field, render as empty text instead of failing."""
    notice = render.render_event(
        lsky_paid(), title="{{ order.id }}|{{ order.nope.deeper.still }}|{{ order.product.name }}", body="x"
    )
    assert notice.title == "||月卡"
    assert notice.fallback is None


def test_failing_template_falls_back_to_default() -> None:
    """A template that fails at render time is replaced by the default and the reason is given."""
    event = ace_expired()
    default = render.render_event(event, title=None, body=None)
    notice = render.render_event(event, title="{{ order.price + order.missing }}", body="{{ 1 / 0 }}")
    assert (notice.title, notice.body) == (default.title, default.body)
    assert notice.fallback is not None
    assert "title template" in notice.fallback
    assert "ZeroDivisionError" in notice.fallback


def test_template_rendering_empty_falls_back() -> None:
    """A body template that renders to nothing is replaced by the default body."""
    notice = render.render_event(ace_expired(), title=None, body="{{ order.nothing }}  ")
    assert notice.body == render.render_event(ace_expired(), title=None, body=None).body
    assert notice.fallback == "body template: rendered empty"


def test_sandbox_blocks_unsafe_attribute_access() -> None:
    """Templates cannot reach Python internals: dunder access renders nothing or falls back, never leaks."""
    probes = [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.environ }}",
        "{{ event.__class__ }}",
        "{{ order.items.__self__.__class__ }}",
        "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    ]
    default = render.render_event(ace_expired(), title=None, body=None)
    for probe in probes:
        notice = render.render_event(ace_expired(), title=probe, body=probe)
        assert "<class" not in notice.title + notice.body
        assert "environ" not in notice.body
        assert (notice.title, notice.body) == (default.title, default.body)
        assert notice.fallback is not None


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELDS = ["amount", "price", "pay_way", "pay_method", "pay_url", "product", "trade_no", "created_at", "currency"]


@given(
    st.sampled_from([ACE_ORDER, LSKY_ORDER, {}]),
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=4),
    st.text(max_size=40),
    st.sampled_from([None, "Paid", "薪水"]),
)
def test_default_rendering_survives_any_order(
    base: dict[str, Any], odd: dict[str, Any], order_id: str, state: str | None
) -> None:
    """Odd field values (None, numbers as strings, nested junk, unicode) never break the default rendering."""
    order = {**base, **odd}
    event = Event("ace", order_id, "transition", state, "Paid", None, state, DETECTED, canonical_json(order))
    notice = render.render_event(event, title=None, body=None)
    assert "\n" not in notice.title
    assert notice.title.startswith("[ace] order ")
    assert notice.body.startswith("Source: ace")
    assert render.render_digest([event]).body


def test_corrupt_stored_order_renders_default() -> None:
    """An event whose stored order is not JSON still renders, with the order treated as empty."""
    event = Event("ace", "o1", "transition", "Pending", "Paid", "Pending", "Paid", DETECTED, b"{not json")
    notice = render.render_event(event, title="{{ order.id }}{{ event.order_id }}", body=None)
    assert notice.title == "o1"
    assert "State: Pending → Paid" in notice.body


def test_check_template() -> None:
    """check_template accepts valid templates and describes a syntax error on one line."""
    assert render.check_template("{{ event.source }}: {{ order.id | default('?') }}") is None
    problem = render.check_template("{{ event.source ")
    assert problem is not None
    assert problem.startswith("line 1: ")
    assert "\n" not in problem
    assert render.check_template("{% for x in y %}") is not None


def test_digest_counts_then_first_summaries() -> None:
    """A digest counts by transition, lists the first N summaries and says how many more there are."""
    events = [ace_expired()] * 20 + [lsky_paid()] * 12 + [
        Event("ace", "n1", "appeared", None, "Pending", None, "Pending", DETECTED)
    ] * 5  # fmt: skip
    notice = render.render_digest(events, first=10)
    assert notice.title == "[orderwatch] 37 order changes"
    lines = notice.body.splitlines()
    assert lines[:3] == ["Pending → Expired: 20", "Pending → Paid: 12", "appeared: 5"]
    assert lines.count("[ace] order 3f2b8c1e… Pending → Expired") == 10
    assert lines[-1] == "… and 27 more"


def test_digest_of_few_events_has_no_more_line() -> None:
    """A digest no longer than `first` lists every event and says nothing more; one event is singular."""
    notice = render.render_digest([lsky_paid()], first=10)
    assert notice.title == "[orderwatch] 1 order change"
    assert notice.body.splitlines()[-1] == "[images] order 2024101513033419533_002 Pending → Paid"


def test_test_notice_is_not_empty() -> None:
    """The `check --notify` notice has a title and a body."""
    notice = render.test_notice()
    assert notice.title.startswith("[orderwatch]")
    assert notice.body

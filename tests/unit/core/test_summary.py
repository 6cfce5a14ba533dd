"""Scheduled summaries' totals and text (pure): counts by state from events, amounts per currency, templates."""

from __future__ import annotations

from decimal import Decimal

from orderwatch.core.model import Event
from orderwatch.core.summary import context, render_summary, totals


def event(source: str, kind: str, to: str | None = None, amount: str | None = None) -> Event:
    """An event of ``kind`` to state ``to``; its order's amount (USD) in ``order_json``."""
    order = b'{"price": "' + amount.encode() + b'"}' if amount else b"{}"
    return Event(
        source=source,
        order_id="o",
        kind=kind,  # type: ignore[arg-type]
        from_state="Pending" if kind == "transition" else None,
        to_state=to,
        raw_from=None,
        raw_to=to,
        detected_at="2026-11-22T10:00:00.000000Z",
        order_json=order,
        id=1,
    )


def usd(ev: Event) -> tuple[str, Decimal] | None:
    """The order's price in USD, read from the test order."""
    price = ev.order().get("price")
    return ("USD", Decimal(price)) if price else None


def test_totals_count_new_orders_states_and_refunded_amounts_per_source() -> None:
    """Appeared events are new orders, transitions count by the state reached, refund amounts are summed."""
    events = [event("ace", "appeared", "Pending")] * 3 + [event("ace", "transition", "Paid")] * 2
    events += [event("ace", "transition", "Refunded", "400.25"), event("ace", "transition", "Refunded", "12.25")]
    events += [event("ace", "transition", "Expired"), event("images", "transition", "Paid")]
    found = totals(events, ["ace", "images", "quiet"], usd)
    assert [t.text() for t in found] == [
        "3 new orders, 2 paid, 2 refunded (USD 412.50), 1 expired",
        "1 paid",
        "no changes",
    ]


def test_the_default_text_says_yesterday_on_each_source() -> None:
    """The default body has one line per source: "Yesterday on ace: …"; the title names the summary and period."""
    found = totals([event("ace", "appeared", "Pending")], ["ace"], usd)
    notice = render_summary(context("daily-ace", "2026-11-23", "Yesterday", "a", "b", found), title=None, body=None)
    assert notice.body == "Yesterday on ace: 1 new order"
    assert notice.title == "[orderwatch] daily-ace: yesterday (2026-11-23)"
    assert notice.fallback is None


def test_a_user_template_gets_the_totals_and_a_broken_one_falls_back() -> None:
    """A summary template reads summary.sources[…].states; one that fails renders the default and says why."""
    found = totals([event("ace", "transition", "Paid")] * 4, ["ace"], usd)
    ctx = context("s", "2026-11-23", "Yesterday", "a", "b", found)
    notice = render_summary(ctx, title="{{ summary.period }}", body="paid: {{ summary.sources[0].states.Paid }}")
    assert (notice.title, notice.body) == ("2026-11-23", "paid: 4")
    broken = render_summary(ctx, title=None, body="{{ 1 / 0 }}")
    assert broken.body == "Yesterday on ace: 4 paid"
    assert broken.fallback is not None and "body template" in broken.fallback

"""``orderwatch silence add|list|expire``: silences kept in the database, honoured by the running daemon at once.

Also the words ``orderwatch outbox`` uses to say why a notification waits, and the silences ``orderwatch changes``
shows beside the events they stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import click

from orderwatch.cli import base
from orderwatch.cli.options import global_options
from orderwatch.cli.output import FORMATS, say

if TYPE_CHECKING:
    from orderwatch.config import Config
    from orderwatch.core.model import Event
    from orderwatch.store import OutboxRow, SilenceRow, Store


@click.group()
@global_options
def silence() -> None:
    """Silence notifications of a source (an order, a rule) for a while; events are still recorded."""


@silence.command(name="add")
@global_options
@click.option("--source", required=True, help="Silence notifications of events of this source.")
@click.option("--order", "order_id", help="Only of this order id.")
@click.option("--rule", help="Only those sent by this rule.")
@click.option("--for", "duration", required=True, help='How long: a duration like "2h" or "1h30m".')
@click.option("--comment", default="", help="Why (shown by silence list).")
@click.pass_context
def add(ctx: click.Context, source: str, order_id: str | None, rule: str | None, duration: str, comment: str) -> None:
    """Add a silence from now for --for; prints its id."""
    from orderwatch import clock
    from orderwatch.core.durations import parse_duration

    conf: Config = base.load_config(ctx, logs=False)
    try:
        seconds = parse_duration(duration)
    except ValueError:
        raise click.BadParameter(f'expected a duration like "2h", got {duration!r}', param_hint="'--for'") from None
    if seconds <= 0:
        raise click.BadParameter(f"must be longer than 0s, got {duration!r}", param_hint="'--for'")
    if source not in conf.sources:
        base.fail(f"unknown source {source!r} (configured: {', '.join(conf.sources) or 'none'})", base.EXIT_USAGE)
    rules = [r.name for r in conf.rules]
    if rule is not None and rule not in rules and rule != "digest":
        base.fail(f"unknown rule {rule!r} (configured: {', '.join(rules) or 'none'})", base.EXIT_USAGE)
    now = clock.now()
    ends = clock.text(now + timedelta(seconds=seconds))
    store: Store = base.open_store(ctx, conf, readonly=False)
    try:
        new = store.add_silence(source, order_id=order_id, rule=rule, comment=comment, now=clock.text(now), ends=ends)
    finally:
        store.close()
    say(f"silence #{new} added: {describe_target(source, order_id, rule)} until {clock.to_second(ends)}")


def describe_target(source: str, order_id: str | None, rule: str | None) -> str:
    """``source ace, order X, rule refunds``."""
    parts = [f"source {source}"]
    parts += [f"order {order_id}"] if order_id is not None else []
    parts += [f"rule {rule}"] if rule is not None else []
    return ", ".join(parts)


@silence.command(name="list")
@global_options
@click.option("--all", "every", is_flag=True, help="Also silences that have ended.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="table, json or ndjson.")
@click.pass_context
def list_(ctx: click.Context, every: bool, fmt: str | None) -> None:
    """List silences in force (with --all: every one)."""
    from orderwatch import clock

    now = clock.now_text()
    found: list[SilenceRow] = base.read_store(ctx, lambda store: store.silences())
    shown = [s for s in found if every or s.active(now)]
    base.emit_rows(
        fmt,
        f"{len(shown)} silences",
        ("id", "state", "source", "order", "rule", "until", "comment"),
        (
            (
                f"#{s.id}",
                "active" if s.active(now) else "ended",
                s.source,
                s.order_id or "",
                s.rule or "",
                clock.to_second(s.ended_at()),
                s.comment,
            )
            for s in shown
        ),
        (
            {
                "id": s.id,
                "active": s.active(now),
                "source": s.source,
                "order_id": s.order_id,
                "rule": s.rule,
                "created_at": s.created_at,
                "ends_at": s.ends_at,
                "expired_at": s.expired_at,
                "comment": s.comment,
            }
            for s in shown
        ),
    )


@silence.command()
@global_options
@click.argument("silence_id", metavar="ID", type=str)
@click.pass_context
def expire(ctx: click.Context, silence_id: str) -> None:
    """End silence ID now (``3`` or ``#3``)."""
    from orderwatch import clock

    text = silence_id.removeprefix("#")
    if not text.isdigit():
        raise click.BadParameter(f"expected a silence id like 3, got {silence_id!r}", param_hint="'ID'")
    conf = base.load_config(ctx, logs=False)
    store: Store = base.open_store(ctx, conf, readonly=False)
    try:
        done = store.expire_silence(int(text), now=clock.now_text())
    finally:
        store.close()
    if not done:
        base.fail(f"no silence #{text} in force (see orderwatch silence list --all)")
    say(f"silence #{text} expired")


# ---- what outbox and changes show


def waiting_reason(row: OutboxRow, hold: tuple[str | None, int | None], conf: Config | None, now: str) -> str:
    """Why ``row`` is where it is: ``quiet hours until 07:00 Europe/Berlin``, ``silenced by #3``, ``retry at …``,
    ``due``; empty for sent and failed rows."""
    from orderwatch import clock
    from orderwatch.core.quiet import zone

    why, by = hold
    if row.status == "silenced":
        return f"silenced by #{by}" if by is not None else "silenced"
    if row.status != "pending":
        return ""
    if row.next_attempt_at <= now:
        return "due"
    if why == "quiet":
        channel = conf.channels.get(row.channel) if conf is not None else None
        if channel is not None and channel.quiet is not None:
            local = clock.parse(row.next_attempt_at).astimezone(zone(channel.quiet.zone))
            return f"quiet hours until {local:%H:%M} {channel.quiet.zone}"
        return f"quiet hours until {clock.to_second(row.next_attempt_at)}"
    if row.attempts:
        return f"retry at {clock.to_second(row.next_attempt_at)}"
    return f"due at {clock.to_second(row.next_attempt_at)}"


def silenced_of(store: Store, events: Sequence[Event]) -> Mapping[int, list[tuple[str, int]]]:
    """For each of ``events`` a silence stopped: (channel, silence id) pairs."""
    return store.silenced_events([e.id for e in events if e.id is not None])

"""The ``orderwatch`` command line (click + rich). Heavy modules are imported inside the commands that need them.

Exit codes: 0 success; 1 the work ran but something failed (a source could not be polled, a notification could not
be delivered); 2 bad usage or bad configuration.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from orderwatch import __version__
from orderwatch.cli.base import (
    EXIT_FAILED,
    EXIT_USAGE,
    database_path,
    emit_rows,
    fail,
    format_option,
    iso_since,
    known_sources,
    load_config,
    open_store,
    output_format,
    read_store,
    run_async,
)
from orderwatch.cli.options import given, global_options
from orderwatch.cli.output import say
from orderwatch.cli.silence import silence
from orderwatch.errors import OrderwatchError, StoreError

if TYPE_CHECKING:
    from orderwatch.store import OutboxRow, Store


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@global_options
@click.version_option(__version__, prog_name="orderwatch")
def main() -> None:
    """Watch orders-list APIs, detect every order's state transitions, and notify.

    --config, --database and --log-level may come before the command or after it.
    """
    _check_clock()


def _check_clock() -> None:
    """``$ORDERWATCH_CLOCK_FILE`` (a testing aid, see ``orderwatch.clock``) that holds no time: exit 2 now."""
    from orderwatch import clock

    try:
        clock.now()
    except clock.ClockError as exc:
        fail(str(exc), EXIT_USAGE)


@main.command()
@global_options
@click.argument("sources", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Fetch and diff, but write nothing and send nothing.")
@click.option("--no-notify", is_flag=True, help="Record events and queue notifications, but deliver none now.")
@click.option(
    "--full/--incremental",
    default=None,
    help="Force a full sweep, or an incremental poll (default: full when one is due, else incremental).",
)
@format_option
@click.pass_context
def poll(
    ctx: click.Context, sources: tuple[str, ...], dry_run: bool, no_notify: bool, full: bool | None, fmt: str | None
) -> None:
    """Poll SOURCES (default: all) once and print the events it made."""
    from orderwatch.cli import commands as app
    from orderwatch.cli.output import print_events

    conf = load_config(ctx, deep=True)
    known_sources(conf, sources)
    store = open_store(ctx, conf, readonly=False) if not dry_run else app.dry_run_store(database_path(ctx, conf))
    try:
        results, delivery_failed = run_async(
            lambda: app.poll_once(conf, store, sources, dry_run=dry_run, notify=not (dry_run or no_notify), full=full)
        )
    finally:
        store.close()
    events = [e for r in results for e in r.events]
    print_events(events, output_format(fmt), sys.stdout)
    for r in results:
        if r.error:
            say(f"orderwatch: {r.source}: {r.error}", err=True)
        elif r.baseline:
            say(f"orderwatch: {r.source}: baseline of {r.orders} orders recorded (no events)", err=True)
    if any(r.error for r in results) or delivery_failed:
        sys.exit(EXIT_FAILED)


@main.command()
@global_options
@click.option("--since", help='Only events detected since this: a duration back ("24h") or an ISO 8601 time.')
@click.option("--source", help="Only events of this source.")
@click.option("--order", "order_id", help="Only events of this order id.")
@click.option("--state", help="Only events from or to this state (case-insensitive).")
@click.option("--kind", type=click.Choice(["transition", "appeared", "vanished"]), help="Only events of this kind.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N (still printed oldest first).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they are recorded (Ctrl-C stops).")
@format_option
@click.pass_context
def changes(
    ctx: click.Context,
    since: str | None,
    source: str | None,
    order_id: str | None,
    state: str | None,
    kind: str | None,
    limit: int | None,
    follow: bool,
    fmt: str | None,
) -> None:
    """Print recorded events, oldest first (with the silences that stopped their notifications)."""
    from orderwatch.cli.output import print_events
    from orderwatch.cli.silence import silenced_of
    from orderwatch.store import EventFilter

    conf = load_config(ctx, logs=follow)
    chosen = output_format(fmt)
    if follow and chosen == "json":
        fail("--follow prints a stream: use --format ndjson or table", EXIT_USAGE)
    store = open_store(ctx, conf, readonly=True)
    flt = EventFilter(
        since=iso_since(since) if since else None,
        source=source,
        order_id=order_id,
        state=state,
        kind=kind,
        limit=limit,
    )
    try:
        # read before the listing: an event recorded between the two reads is then listed or followed, never lost
        newest = _last_event_id(store) if follow else 0
        events = store.events(flt)
        print_events(events, chosen, sys.stdout, silenced=silenced_of(store, events))
        if follow:
            from orderwatch.cli.commands import follow_events

            last = max((events[-1].id or 0) if events else 0, newest)
            follow_events(
                store,
                EventFilter(source=source, order_id=order_id, state=state, kind=kind),
                last,
                lambda evs: print_events(evs, chosen, sys.stdout, silenced=silenced_of(store, evs)),
            )
    except StoreError as exc:
        fail(str(exc))
    finally:
        store.close()


def _last_event_id(store: Store) -> int:
    from orderwatch.store import EventFilter

    newest = store.events(EventFilter(limit=1))
    return newest[-1].id or 0 if newest else 0


@main.command()
@global_options
@click.option("--source", help="Only orders of this source.")
@click.option("--state", help="Only orders in this state (canonical, case-insensitive).")
@format_option
@click.pass_context
def orders(ctx: click.Context, source: str | None, state: str | None, fmt: str | None) -> None:
    """Print the current snapshot of orders."""
    import orjson

    rows = read_store(ctx, lambda store: store.orders(source, state))
    emit_rows(
        fmt,
        f"{len(rows)} orders",
        ("source", "order", "state", "raw state", "first seen", "changed"),
        ((r.source, r.key, r.state, r.raw_state, r.first_seen[:19], r.changed_at[:19]) for r in rows),
        (
            {
                "source": r.source,
                "order_id": r.key,
                "state": r.state,
                "raw_state": r.raw_state,
                "first_seen": r.first_seen,
                "changed_at": r.changed_at,
                "order": orjson.loads(r.raw),
            }
            for r in rows
        ),
    )


@main.command()
@global_options
@click.option("--connect", is_flag=True, help="Also fetch one page from each source (auth, shape).")
@click.option("--notify", is_flag=True, help="Also send a test message to every channel.")
@click.pass_context
def check(ctx: click.Context, connect: bool, notify: bool) -> None:
    """Validate the configuration; optionally try every source and channel."""
    from orderwatch.cli import commands as app

    conf = load_config(ctx, deep=True)
    say(
        f"config OK: {conf.path} — {len(conf.sources)} source(s), {len(conf.channels)} channel(s), "
        f"{len(conf.rules)} rule(s); database {database_path(ctx, conf)}"
    )
    ok = True
    if connect:
        for line, good in run_async(lambda: app.check_sources(conf)):
            say(line)
            ok &= good
    if notify:
        for line, good in run_async(lambda: app.check_channels(conf)):
            say(line)
            ok &= good
    if not ok:
        sys.exit(EXIT_FAILED)


@main.command()
@global_options
@click.option(
    "--orders",
    "n_orders",
    type=click.IntRange(min=0),
    default=40,
    show_default=True,
    help="Orders each simulated API starts with.",
)
@click.option("--every", type=float, default=2.0, show_default=True, help="Seconds between simulated changes.")
@click.option("--interval", type=float, default=3.0, show_default=True, help="Seconds between polls.")
@click.pass_context
def demo(ctx: click.Context, n_orders: int, every: float, interval: float) -> None:
    """Run the built-in simulator (both API formats) and watch it, printing changes and notices as they happen."""
    from orderwatch.cli.demo import run_demo

    sys.exit(run_demo(n_orders=n_orders, every=every, interval=interval, database=given(ctx, "database")))


@main.command(name="run")
@global_options
@click.pass_context
def run_cmd(ctx: click.Context) -> None:
    """Run the daemon: poll every source on its interval and deliver notifications until SIGTERM/SIGINT.

    SIGHUP reloads the configuration (a bad new config is logged and the old one kept).
    """
    from orderwatch.service import hangup
    from orderwatch.service.daemon import run_daemon

    hangup.install()  # before the config is read: a SIGHUP while starting must not end the process
    conf = load_config(ctx, deep=True)
    sys.exit(run_daemon(conf, config_path=given(ctx, "config"), database=given(ctx, "database")))


@main.command()
@global_options
@format_option
@click.pass_context
def status(ctx: click.Context, fmt: str | None) -> None:
    """Show each source's last success, last error and next poll, and the outbox depth."""
    from orderwatch.cli.status import source_status

    conf = load_config(ctx)
    rows, depth = read_store(ctx, lambda store: source_status(conf, store))
    columns = ("source", "last success", "last error", "failures", "next poll", "orders")
    emit_rows(
        fmt,
        f"outbox: {depth} pending",
        columns,
        ([str(r[c]) for c in columns] for r in rows),
        [*rows, {"outbox_pending": depth}],
    )


@main.group(invoke_without_command=True)
@global_options
@click.option(
    "--status",
    "status_",
    type=click.Choice(["pending", "failed", "sent", "silenced"]),
    help="Only rows of this status.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N rows.")
@format_option
@click.pass_context
def outbox(ctx: click.Context, status_: str | None, limit: int | None, fmt: str | None) -> None:
    """List notifications: pending, failed, sent or silenced, with attempts, why each waits, and the last error."""
    if ctx.invoked_subcommand is not None:
        return
    from orderwatch import clock
    from orderwatch.cli.silence import waiting_reason

    conf = load_config(ctx, logs=False)
    rows, holds = read_store(ctx, lambda store: _with_holds(store, store.outbox(status_, limit)))
    now = clock.now_text()
    why = {r.id: waiting_reason(r, holds.get(r.id, (None, None)), conf, now) for r in rows}
    emit_rows(
        fmt,
        f"{len(rows)} notifications",
        ("id", "status", "channel", "rule", "events", "attempts", "next attempt", "why", "last error"),
        (
            (
                str(r.id),
                r.status,
                r.channel,
                r.rule,
                ",".join(map(str, r.event_ids)),
                str(r.attempts),
                r.next_attempt_at[:19] if r.status == "pending" else "",
                why[r.id],
                r.last_error or "",
            )
            for r in rows
        ),
        (
            {
                "id": r.id,
                "status": r.status,
                "channel": r.channel,
                "rule": r.rule,
                "digest": r.digest,
                "event_ids": list(r.event_ids),
                "attempts": r.attempts,
                "created_at": r.created_at,
                "next_attempt_at": r.next_attempt_at,
                "last_error": r.last_error,
                "sent_at": r.sent_at,
                "why": why[r.id],
                "silenced_by": holds.get(r.id, (None, None))[1],
            }
            for r in rows
        ),
    )


def _with_holds(
    store: Store, rows: list[OutboxRow]
) -> tuple[list[OutboxRow], dict[int, tuple[str | None, int | None]]]:
    """The rows with what holds each (``hold``, ``silenced_by``)."""
    return rows, store.holds([r.id for r in rows])


@outbox.command()
@global_options
@click.argument("ids", nargs=-1, type=int)
@click.pass_context
def retry(ctx: click.Context, ids: tuple[int, ...]) -> None:
    """Re-queue failed notifications (or the given IDS) to be delivered now."""
    from orderwatch import clock

    conf = load_config(ctx)
    store = open_store(ctx, conf, readonly=False)
    try:
        count = store.requeue(ids, now=clock.now_text())
    finally:
        store.close()
    say(f"re-queued {count} notification(s)")
    if ids and count < len(ids):
        fail(f"{len(ids) - count} of the given ids are unknown or already sent")


main.add_command(silence)


def run() -> None:
    """Entry point with top-level error handling: typed errors are one line, never a traceback."""
    try:
        main(standalone_mode=True)
    except OrderwatchError as exc:
        fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run()

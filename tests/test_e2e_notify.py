"""Issue 3's acceptance: notifications end to end — the real CLI in a subprocess, the simulator, and real loopback
receivers (aiosmtpd for ``mailto://``, an HTTP server for ``json://``). Every CLI call is a new process, so anything
delivered by a later call survived a restart. No command's output may hold a secret of any configured URL.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderwatch.simulator import SimServer, Simulator
from orderwatch.simulator.state import Api
from tests.conftest import ACE_TOKEN, LSKY_TOKEN, Ran, config_text, run_cli
from tests.receivers import SmtpReceiver, WebhookReceiver, WebhookRequest

OPS_TOKEN = "whk-ops-7f3e9a1c5b2d4086"
TEAM_TOKEN = "whk-team-2b8d6f0a9c4e1357"
SMTP_USER = "bot"
SMTP_PASSWORD = "smtp-Pa55-9w0rd-xq"
SECRETS = (OPS_TOKEN, TEAM_TOKEN, SMTP_PASSWORD, ACE_TOKEN, LSKY_TOKEN)
NEVER_WORKS = "ntfy://127.0.0.1:1/"  # apprise parses it, but it names no topic: no send can ever succeed
WAIT = 20.0  # bound on any wait for a delivery that must happen


# ---------------------------------------------------------------------------------------------- helpers


def cli(config: Path, *args: str, env: dict[str, str] | None = None) -> Ran:
    """Run the real CLI and check that no secret of any URL or token shows in its stdout or stderr."""
    ran = run_cli(config, *args, env=env)
    for secret in SECRETS:
        assert secret not in ran.out, f"secret in stdout of {args}"
        assert secret not in ran.err, f"secret in stderr of {args}"
    return ran


def toml_channel(name: str, *urls: str, digest_over: int | None = None) -> str:
    """A ``[channels.NAME]`` table."""
    text = f"\n[channels.{name}]\nurls = {json.dumps(list(urls))}\n"
    return text + (f"digest_over = {digest_over}\n" if digest_over is not None else "")


def toml_rule(name: str, channels: list[str], **keys: Any) -> str:
    """A ``[[rules]]`` table; ``from_`` is written as ``from``."""
    lines = [f"name = {json.dumps(name)}", f"channels = {json.dumps(channels)}"]
    lines += [f"{key.rstrip('_')} = {json.dumps(value, ensure_ascii=False)}" for key, value in keys.items()]
    return "\n[[rules]]\n" + "\n".join(lines) + "\n"


def write_config(tmp_path: Path, server: SimServer, extra: str) -> Path:
    """A config for both simulated sources plus ``extra`` (channels, rules, delivery)."""
    path = tmp_path / "orderwatch.toml"
    path.write_text(config_text(server.url, tmp_path / "ow.db", extra=extra), encoding="utf-8")
    return path


def baseline(config: Path) -> None:
    """The first poll: records every order, makes no event and sends nothing."""
    ran = cli(config, "poll", "--format", "ndjson")
    assert ran.code == 0, ran.err
    assert ran.ndjson() == []


def poll_events(config: Path, *args: str, code: int = 0) -> dict[int, str]:
    """One poll; its events as {event id: order id}."""
    ran = cli(config, "poll", "--format", "ndjson", *args)
    assert ran.code == code, ran.err
    return {e["id"]: e["order_id"] for e in ran.ndjson()}


def outbox(config: Path, status: str | None = None) -> list[dict[str, Any]]:
    """``orderwatch outbox --format json`` (optionally of one status), parsed."""
    ran = cli(config, "outbox", "--format", "json", *(("--status", status) if status else ()))
    assert ran.code == 0, ran.err
    rows: list[dict[str, Any]] = orjson.loads(ran.out)
    return rows


def order_of(request: WebhookRequest) -> str:
    """The order id a single-event webhook message is about (the default body's ``Order:`` line)."""
    match = re.search(r"^Order: (\S+)$", request.body["message"], re.MULTILINE)
    assert match, request.body
    return match[1]


def poll_until(config: Path, done: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Run ``poll`` (each time a new process) until ``done()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        cli(config, "poll")


def down_receiver(token: str) -> WebhookReceiver:
    """A webhook receiver that has a port (so a URL) but is not listening: connections are refused."""
    receiver = WebhookReceiver(path=f"/hooks/{token}").start()
    receiver.stop()
    return receiver


@pytest.fixture
def ops_hook() -> Iterator[WebhookReceiver]:
    """The "ops" webhook; its path holds a secret token."""
    with WebhookReceiver(path=f"/hooks/{OPS_TOKEN}") as receiver:
        yield receiver


@pytest.fixture
def team_hook() -> Iterator[WebhookReceiver]:
    """The "team" webhook; its path holds a secret token."""
    with WebhookReceiver(path=f"/hooks/{TEAM_TOKEN}") as receiver:
        yield receiver


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """An SMTP server that accepts only the secret password."""
    with SmtpReceiver(user=SMTP_USER, password=SMTP_PASSWORD) as receiver:
        yield receiver


def ids(sim: Simulator, api: Api) -> list[str]:
    """The simulator's order keys of ``api``, in its order."""
    return [str(o["id" if api == "ace" else "trade_no"]) for o in sim.orders(api)]


# ---------------------------------------------------------------------------------------------- delivery


def test_email_arrives_at_the_smtp_server_after_a_poll_that_made_a_matching_event(
    tmp_path: Path, sim: Simulator, server: SimServer, smtp: SmtpReceiver
) -> None:
    """A matching event becomes exactly one email over mailto:// (authenticated), rendered from the rule's templates."""
    extra = toml_channel("finance", smtp.url_for_apprise(to="finance@example.com"))
    extra += toml_rule(
        "expired",
        ["finance"],
        to=["Expired"],
        title="{{ event.source }} order {{ order.id }} expired",
        body="was {{ event.from_state }}; {{ order.price }} USD via {{ order.pay_way }}",
    )
    config = write_config(tmp_path, server, extra)
    baseline(config)
    assert smtp.messages == []
    ace = ids(sim, "ace")
    sim.set_state("ace", ace[0], "Expired")
    sim.set_state("ace", ace[1], "Paid")  # not selected by the rule

    events = poll_events(config)
    assert sorted(events.values()) == sorted(ace[:2])
    [mail] = smtp.wait_for(1, timeout=WAIT)
    order = sim.orders("ace")[0]
    assert mail.subject == f"ace order {ace[0]} expired"
    assert mail.text().strip() == f"was Pending; {order['price']} USD via {order['pay_way']}"
    assert mail.rcpt_tos == ("finance@example.com",)
    assert mail.login == SMTP_USER
    [row] = outbox(config)
    assert (row["status"], row["channel"], row["rule"], row["attempts"]) == ("sent", "finance", "expired", 1)
    assert [events[i] for i in row["event_ids"]] == [ace[0]]
    assert len(smtp.messages) == 1


def test_webhook_gets_exactly_one_message_per_event_per_matching_channel(
    tmp_path: Path, sim: Simulator, server: SimServer, ops_hook: WebhookReceiver, team_hook: WebhookReceiver
) -> None:
    """Two channels, overlapping rules: each event reaches each matching channel once, and is never sent again."""
    extra = toml_channel("ops", ops_hook.url_for_apprise) + toml_channel("team", team_hook.url_for_apprise)
    extra += toml_rule("lost", ["ops"], to=["Expired", "Failed", "Cancelled"])
    extra += toml_rule("ace-expired", ["ops", "team"], sources=["ace"], to=["Expired"])
    extra += toml_rule("paid", ["team"], to=["Paid"])
    config = write_config(tmp_path, server, extra)
    baseline(config)
    ace, lsky = ids(sim, "ace"), ids(sim, "lsky")
    sim.set_state("ace", ace[0], "Expired")  # lost → ops and ace-expired → ops: one ops message; ace-expired → team
    sim.set_state("ace", ace[1], "Failed")  # lost → ops
    sim.set_state("lsky", lsky[0], "cancelled")  # lost → ops
    sim.set_state("lsky", lsky[1], "paid")  # paid → team
    sim.set_state("ace", ace[2], "Paid")  # paid → team

    events = poll_events(config)
    assert len(events) == 5
    ops = ops_hook.wait_for(3, timeout=WAIT)
    team = team_hook.wait_for(3, timeout=WAIT)
    assert Counter(order_of(r) for r in ops) == Counter([ace[0], ace[1], lsky[0]])
    assert Counter(order_of(r) for r in team) == Counter([ace[0], lsky[1], ace[2]])
    assert {r.path for r in ops + team} == {ops_hook.path, team_hook.path}
    expired = next(r for r in ops if order_of(r) == ace[0])
    assert expired.body["title"] == f"[ace] order {ace[0][:8]}… Pending → Expired"
    assert "State: Pending → Expired" in expired.body["message"]
    rows = outbox(config)
    assert {(r["channel"], r["rule"], events[r["event_ids"][0]]) for r in rows} == {
        ("ops", "lost", ace[0]),
        ("team", "ace-expired", ace[0]),
        ("ops", "lost", ace[1]),
        ("ops", "lost", lsky[0]),
        ("team", "paid", lsky[1]),
        ("team", "paid", ace[2]),
    }
    assert len(rows) == 6
    assert {(r["status"], r["attempts"], r["digest"]) for r in rows} == {("sent", 1, False)}

    assert poll_events(config) == {}
    assert (len(ops_hook.requests), len(team_hook.requests)) == (3, 3)


def test_rules_select_by_from_state_to_state_source_and_kind(tmp_path: Path, sim: Simulator, server: SimServer) -> None:
    """Each rule's from/to/sources/events filter picks exactly its events; events no rule selects are not sent."""
    names = ("by-from", "by-to", "by-source", "by-kind")
    hooks = {name: WebhookReceiver(path=f"/hooks/{name}/{OPS_TOKEN}").start() for name in names}
    try:
        extra = "".join(toml_channel(name, hook.url_for_apprise) for name, hook in hooks.items())
        extra += toml_rule("from-paid", ["by-from"], from_=["Paid"])
        extra += toml_rule("to-cancelled", ["by-to"], to=["cancelled"])
        extra += toml_rule("images", ["by-source"], sources=["images"])
        extra += toml_rule("new", ["by-kind"], events=["appeared"])
        extra += toml_rule("gone", ["by-kind"], events=["vanished"], from_=["Cancelled"])
        config = write_config(tmp_path, server, extra)
        [paid_ace] = sim.add_ace(1, state="Paid")
        [cancelled_lsky] = sim.add_lsky(1, status="cancelled")
        baseline(config)
        ace, lsky = ids(sim, "ace"), ids(sim, "lsky")
        sim.set_state("ace", paid_ace, "Finished")  # from Paid
        sim.set_state("ace", ace[0], "Paid")  # no rule: to Paid, from Pending, source ace
        sim.set_state("ace", ace[1], "Expired")  # no rule
        sim.set_state("lsky", lsky[0], "paid")  # source images
        sim.set_state("lsky", lsky[1], "cancelled")  # to Cancelled, source images
        [new_ace] = sim.add_ace(1)  # appeared
        sim.delete("lsky", cancelled_lsky)  # vanished from Cancelled

        events = poll_events(config, "--full")
        assert len(events) == 7
        expected = {
            "by-from": {paid_ace},
            "by-to": {lsky[1]},
            "by-source": {lsky[0], lsky[1]},
            "by-kind": {new_ace, cancelled_lsky},
        }
        for name, orders in expected.items():
            got = hooks[name].wait_for(len(orders), timeout=WAIT)
            assert sorted(order_of(r) for r in got) == sorted(orders), name
        rows = outbox(config)
        assert len(rows) == 6
        assert {r["status"] for r in rows} == {"sent"}
        assert {events[r["event_ids"][0]] for r in rows}.isdisjoint({ace[0], ace[1]})
    finally:
        for hook in hooks.values():
            hook.stop()


def test_a_digest_replaces_single_messages_above_digest_over(
    tmp_path: Path, sim: Simulator, server: SimServer, ops_hook: WebhookReceiver, team_hook: WebhookReceiver
) -> None:
    """More events than digest_over for a channel from one source's poll → one digest (counts, first lines,
    "and N more"); exactly digest_over → single messages."""
    extra = toml_channel("ops", ops_hook.url_for_apprise, digest_over=3)
    extra += toml_channel("team", team_hook.url_for_apprise, digest_over=12)
    extra += toml_rule("lost", ["ops", "team"], to=["Expired", "Failed"])
    config = write_config(tmp_path, server, extra)
    baseline(config)
    ace = ids(sim, "ace")
    assert len(ace) == 12
    for key in ace[:7]:
        sim.set_state("ace", key, "Expired")
    for key in ace[7:]:
        sim.set_state("ace", key, "Failed")

    events = poll_events(config)
    assert len(events) == 12
    team = team_hook.wait_for(12, timeout=WAIT)
    assert sorted(order_of(r) for r in team) == sorted(ace)
    [digest] = ops_hook.wait_for(1, timeout=WAIT)
    assert digest.body["title"] == "[orderwatch] 12 order changes"
    lines = digest.body["message"].splitlines()
    assert lines[:2] == ["Pending → Expired: 7", "Pending → Failed: 5"]
    assert len([line for line in lines if line.startswith("[ace] order ")]) == 10
    assert lines[-1] == "… and 2 more"
    rows = outbox(config)
    [ops_row] = [r for r in rows if r["channel"] == "ops"]
    assert (ops_row["rule"], ops_row["digest"], ops_row["status"]) == ("digest", True, "sent")
    assert sorted(ops_row["event_ids"]) == sorted(events)
    assert len([r for r in rows if r["channel"] == "team" and not r["digest"]]) == 12
    assert len(ops_hook.requests) == 1


# ---------------------------------------------------------------------------------------------- durability


def test_messages_wait_while_the_receiver_is_down_and_arrive_once_it_is_back(
    tmp_path: Path, sim: Simulator, server: SimServer, ops_hook: WebhookReceiver
) -> None:
    """With one URL of a channel down, its notices stay pending with attempts and a readable last error; a later
    process delivers each exactly once when it is back, and the URL that worked is not sent them again."""
    hook = down_receiver(TEAM_TOKEN)
    try:
        extra = toml_channel("ops", ops_hook.url_for_apprise, hook.url_for_apprise)
        extra += toml_rule("lost", ["ops"], to=["Expired"])
        extra += '\n[delivery]\nretry_initial = "1s"\nretry_max = "1s"\n'
        config = write_config(tmp_path, server, extra)
        baseline(config)
        ace = ids(sim, "ace")
        sim.set_state("ace", ace[0], "Expired")
        sim.set_state("ace", ace[1], "Expired")

        events = poll_events(config, code=1)  # exit 1: a notification could not be delivered (it will be retried)
        assert sorted(events.values()) == sorted(ace[:2])
        rows = outbox(config, "pending")
        assert len(rows) == 2
        for row in rows:
            assert row["attempts"] == 1
            assert row["last_error"].startswith(f"json://127.0.0.1:{hook.port}/")
            assert "error" in row["last_error"].lower()
        assert hook.requests == []
        assert sorted(order_of(r) for r in ops_hook.wait_for(2, timeout=WAIT)) == sorted(ace[:2])

        hook.start()
        poll_until(config, lambda: len(hook.requests) >= 2, "both notices delivered after the receiver came back")
        assert sorted(order_of(r) for r in hook.requests) == sorted(ace[:2])
        assert cli(config, "poll").code == 0
        assert (len(hook.requests), len(ops_hook.requests)) == (2, 2)
        rows = outbox(config)
        assert {r["status"] for r in rows} == {"sent"}
        assert all(r["attempts"] >= 2 for r in rows)
    finally:
        hook.stop()


def test_outbox_retry_makes_a_waiting_notice_due_now_in_a_new_process(
    tmp_path: Path, sim: Simulator, server: SimServer
) -> None:
    """A notice backing off is not sent before it is due; `outbox retry ID` makes it due and the next poll sends it."""
    hook = down_receiver(OPS_TOKEN)
    try:
        extra = toml_channel("ops", hook.url_for_apprise) + toml_rule("lost", ["ops"], to=["Expired"])
        config = write_config(tmp_path, server, extra)  # default back-off: 30 s (±20 %) before the first retry
        baseline(config)
        ace = ids(sim, "ace")
        sim.set_state("ace", ace[0], "Expired")
        poll_events(config, code=1)
        [row] = outbox(config, "pending")
        assert row["attempts"] == 1

        hook.start()
        assert cli(config, "poll").code == 0
        assert hook.requests == []

        assert cli(config, "outbox", "retry", "999").code == 1
        requeued = cli(config, "outbox", "retry", str(row["id"]))
        assert requeued.code == 0, requeued.err
        assert "re-queued 1 notification(s)" in requeued.out
        assert cli(config, "poll").code == 0
        [request] = hook.wait_for(1, timeout=WAIT)
        assert order_of(request) == ace[0]
        [sent] = outbox(config)
        assert (sent["id"], sent["status"], sent["attempts"]) == (row["id"], "sent", 2)
    finally:
        hook.stop()


def test_a_receiver_that_stays_down_goes_dead_after_give_up_after_and_outbox_retry_revives_it(
    tmp_path: Path, sim: Simulator, server: SimServer
) -> None:
    """Past give_up_after a failing notice is marked failed with its last reason, which `outbox --status failed`
    shows; `outbox retry` re-queues it."""
    hook = down_receiver(OPS_TOKEN)
    try:
        extra = toml_channel("ops", hook.url_for_apprise) + toml_rule("lost", ["ops"], to=["Expired"])
        extra += '\n[delivery]\nretry_initial = "10ms"\nretry_max = "10ms"\ngive_up_after = "1ms"\n'
        config = write_config(tmp_path, server, extra)
        baseline(config)
        ace = ids(sim, "ace")
        sim.set_state("ace", ace[0], "Expired")
        cli(config, "poll")
        deadline = time.monotonic() + WAIT
        while not (failed := outbox(config, "failed")):
            assert time.monotonic() < deadline, "the notice was not marked failed"
            cli(config, "poll")
        [row] = failed
        assert re.match(rf"gave up after \d+ attempts: json://127\.0\.0\.1:{hook.port}/", row["last_error"])
        table = cli(config, "outbox", "--status", "failed", "--format", "table", env={"COLUMNS": "250"})
        assert row["last_error"] in table.out

        hook.start()
        requeued = cli(config, "outbox", "retry")
        assert "re-queued 1 notification(s)" in requeued.out
        assert cli(config, "poll").code == 0
        [request] = hook.wait_for(1, timeout=WAIT)
        assert order_of(request) == ace[0]
        assert [(r["id"], r["status"]) for r in outbox(config)] == [(row["id"], "sent")]
    finally:
        hook.stop()


def test_a_url_that_can_never_work_goes_dead_at_once_with_a_readable_reason(
    tmp_path: Path, sim: Simulator, server: SimServer, ops_hook: WebhookReceiver
) -> None:
    """A URL apprise accepts but that can never deliver is marked failed on its first attempt (not retried for 24 h),
    and `outbox --status failed` shows why; the channel's other URL gets the notice once."""
    extra = toml_channel("ops", ops_hook.url_for_apprise, NEVER_WORKS) + toml_rule("lost", ["ops"], to=["Expired"])
    config = write_config(tmp_path, server, extra)
    baseline(config)  # the URL passes the config check: poll loads the config with apprise's parser
    ace = ids(sim, "ace")
    sim.set_state("ace", ace[0], "Expired")

    poll_events(config, code=1)  # exit 1: a notification could not be delivered
    [request] = ops_hook.wait_for(1, timeout=WAIT)
    assert order_of(request) == ace[0]
    [row] = outbox(config)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "no ntfy topics" in row["last_error"]
    table = cli(config, "outbox", "--status", "failed", "--format", "table", env={"COLUMNS": "250"})
    assert "no ntfy topics" in table.out


# ---------------------------------------------------------------------------------------------- config and output


@pytest.mark.parametrize(
    ("extra", "key", "shown"),
    [
        pytest.param(
            toml_channel("ops", "console://") + toml_rule("r", ["ops", "nope"]),
            "rules[0].channels",
            'unknown channel "nope"',
            id="unknown-channel",
        ),
        pytest.param(
            toml_channel("ops", "console://") + toml_rule("r", ["ops"], title="{{ order.id "),
            "rules[0].title",
            "line 1",
            id="broken-template",
        ),
        pytest.param(
            toml_channel("ops", "console://", f"json://{SMTP_USER}:{SMTP_PASSWORD}@[::1:/hooks/{OPS_TOKEN}")
            + toml_rule("r", ["ops"]),
            "channels.ops.urls[1]",
            "apprise cannot use this json URL",
            id="unparseable-url",
        ),
        pytest.param(
            toml_channel("ops", f"nosuchscheme://{SMTP_USER}:{SMTP_PASSWORD}@example.com/{OPS_TOKEN}")
            + toml_rule("r", ["ops"]),
            "channels.ops.urls[0]",
            "unknown scheme 'nosuchscheme'",
            id="unknown-scheme",
        ),
    ],
)
def test_bad_channel_or_rule_is_a_config_error_naming_the_key(
    tmp_path: Path, server: SimServer, extra: str, key: str, shown: str
) -> None:
    """A rule naming an unknown channel, a template that does not compile or a URL apprise cannot use → exit 2,
    the key named, no secret shown, nothing polled."""
    config = write_config(tmp_path, server, extra)
    ran = cli(config, "poll")
    assert ran.code == 2
    assert ran.out == ""
    [line] = [line for line in ran.err.splitlines() if line.startswith("orderwatch: config error:")]
    assert f"{key}: " in line
    assert shown in line
    assert not (tmp_path / "ow.db").exists()


def test_check_notify_sends_a_test_message_to_every_url_and_reports_each_with_secrets_masked(
    tmp_path: Path, server: SimServer, smtp: SmtpReceiver, ops_hook: WebhookReceiver
) -> None:
    """`check --notify` reaches every working URL, reports one line per URL (sent or why not), exits 1 on a failure."""
    down = down_receiver(TEAM_TOKEN)
    extra = toml_channel("mail", smtp.url_for_apprise()) + toml_channel(
        "hooks", ops_hook.url_for_apprise, down.url_for_apprise
    )
    config = write_config(tmp_path, server, extra)
    ran = cli(config, "check", "--notify")
    assert ran.code == 1
    lines = ran.out.splitlines()
    assert lines[0].startswith("config OK:")
    mail_line, ops_line, down_line = lines[1:]
    assert re.fullmatch(r"mail: mailto://\S+: sent", mail_line)
    assert re.fullmatch(rf"hooks: json://127\.0\.0\.1:{ops_hook.port}/\S*: sent", ops_line)
    assert re.fullmatch(rf"hooks: json://127\.0\.0\.1:{down.port}/\S*: failed — .*error.*", down_line, re.IGNORECASE)
    [mail] = smtp.wait_for(1, timeout=WAIT)
    assert mail.subject == "[orderwatch] test notification"
    assert mail.login == SMTP_USER
    [request] = ops_hook.wait_for(1, timeout=WAIT)
    assert request.body["title"] == "[orderwatch] test notification"
    assert "check --notify" in request.body["message"]

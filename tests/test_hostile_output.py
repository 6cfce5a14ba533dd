"""Hostile text from an orders API: escape sequences, C1 controls, carriage returns, bidirectional overrides and rich
markup in order ids, states and error messages reach neither the operator's terminal nor a notification raw, and
never make a command crash. Each test runs the real CLI against a hostile API on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from orderwatch.core.printable import json_printable, printable, printable_block
from tests.conftest import run_cli
from tests.hostile import HostileApi, Request, hostile_config, run_on_terminal
from tests.receivers import WebhookReceiver

TOKEN = "hostile-test-token-0123456789abcdef"
# clear the screen, set the window title, an OSC 8 hyperlink, a carriage return that rewrites the line, a C1 CSI,
# rich markup (a link and an unbalanced closing tag) and a right-to-left override
ORDER_ID = (
    "ord-1\x1b[2J\x1b]0;pwned\x07\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07\rfake\x9b31m"
    "[link=http://evil.example]x[/link][/x]\u202eevil"
)
STATE = "Paid\x1b[5m[/bold]"
ERROR = "[/x] boom \x1b[2J\x1b]0;title\x07\r\x9b2Kdone"
# what must never reach a terminal: the attacker's sequences, as bytes
RAW = [b"\x1b[2J", b"\x1b]0;", b"\x1b]8;", b"\x07", b"\xc2\x9b", b"\x1b[5m", b"\xe2\x80\xae"]


def raw_found(data: bytes) -> list[bytes]:
    """The attacker's sequences present in ``data``, and a carriage return not part of a line break."""
    found = [seq for seq in RAW if seq in data]
    if re.search(rb"\r(?!\n)", data):
        found.append(b"\r")
    return found


def assert_unsafe_free(text: str) -> None:
    """``text`` holds no control character but line breaks and tabs, and no bidirectional override."""
    assert printable_block(text) == text, repr(text)


@pytest.fixture
def api() -> Iterator[HostileApi]:
    """The hostile API, with one ordinary order and one whose id is an attack."""
    with HostileApi() as hostile:
        hostile.orders = [{"id": "plain-1", "state": "Pending"}, {"id": ORDER_ID, "state": "Pending"}]
        yield hostile


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    """A json:// webhook receiver on loopback."""
    with WebhookReceiver(path="/hooks/hostile") as receiver:
        yield receiver


def polled_twice(tmp_path: Path, api: HostileApi, extra: str = "") -> Path:
    """A config for ``api``; a baseline poll, then the hostile order moves to the hostile state and is polled."""
    cfg = hostile_config(tmp_path / "ow.toml", api.url, TOKEN, extra=extra)
    first = run_cli(cfg, "poll", "--full")
    assert first.code == 0, first.err
    api.orders = [{"id": "plain-1", "state": "Pending"}, {"id": ORDER_ID, "state": STATE}]
    second = run_cli(cfg, "poll", "--full", "--format", "ndjson")
    assert second.code == 0, second.err
    assert [(e["order_id"], e["raw_to"]) for e in second.ndjson()] == [(ORDER_ID, STATE)]
    return cfg


def test_tables_and_lines_on_a_terminal_show_api_text_escaped(tmp_path: Path, api: HostileApi) -> None:
    """changes, orders, status, outbox and poll on a real terminal: no raw escape sequence, markup shown as text."""
    cfg = polled_twice(tmp_path, api)
    api.orders = [{"id": "plain-1", "state": "Pending"}, {"id": ORDER_ID, "state": "Refunded"}]
    for args in (["changes"], ["orders"], ["status"], ["outbox"], ["poll", "--full"]):
        code, out = run_on_terminal("--config", str(cfg), *args)
        assert code == 0, (args, out)
        assert raw_found(out) == [], (args, out)
        if args[0] in {"changes", "orders", "poll"}:
            assert b"\\x1b[2J" in out, (args, out)
            assert b"[link=http://evil.example]x[/link][/x]" in out, (args, out)
            assert b"\\u202eevil" in out, (args, out)


def test_json_output_is_exact_and_holds_no_raw_control_character(tmp_path: Path, api: HostileApi) -> None:
    """JSON and NDJSON give back the API's strings exactly, every control and bidi character written as an escape."""
    cfg = polled_twice(tmp_path, api)
    for command in ("changes", "orders"):
        for fmt in ("json", "ndjson"):
            ran = run_cli(cfg, command, "--format", fmt)
            assert ran.code == 0, ran.err
            assert raw_found(ran.out.encode()) == []
            assert "\u202e" not in ran.out
            rows = orjson.loads(ran.out) if fmt == "json" else ran.ndjson()
            assert ORDER_ID in [r["order_id"] for r in rows]
    [row] = [r for r in orjson.loads(run_cli(cfg, "orders", "--format", "json").out) if r["order_id"] == ORDER_ID]
    assert (row["raw_state"], row["order"]["id"]) == (STATE, ORDER_ID)


def test_a_server_error_with_markup_and_escapes_is_shown_escaped(tmp_path: Path, api: HostileApi) -> None:
    """An error body with an unbalanced [/x] and escape sequences: poll says so escaped, status shows it, no crash."""
    cfg = hostile_config(tmp_path / "ow.toml", api.url, TOKEN)
    assert run_cli(cfg, "poll", "--full").code == 0
    api.error = lambda request: (500, orjson.dumps({"detail": ERROR}))
    code, out = run_on_terminal("--config", str(cfg), "poll", "--full")
    assert code == 1, out
    assert raw_found(out) == [], out
    assert b"[/x] boom \\x1b[2J" in out
    for fmt in ("table", "json"):
        code, out = run_on_terminal("--config", str(cfg), "status", "--format", fmt)
        assert code == 0, out
        assert raw_found(out) == [], out
        assert b"[/x] boom" in out


def test_notifications_carry_api_text_escaped(tmp_path: Path, api: HostileApi, hook: WebhookReceiver) -> None:
    """console:// output, default and templated notices to a webhook: the hostile id and state arrive escaped."""
    extra = f"""
[channels.out]
urls = ["console://", "{hook.url_for_apprise}"]

[[rules]]
name = "defaults"
events = ["transition"]
channels = ["out"]

[channels.templated]
urls = ["console://", "{hook.url_for_apprise}"]

[[rules]]
name = "templated"
events = ["transition"]
channels = ["templated"]
title = "{{{{ order.id }}}}"
body = "{{{{ order.id }}}} is now {{{{ event.raw_to }}}}\\nline two"
"""
    cfg = hostile_config(tmp_path / "ow.toml", api.url, TOKEN, extra=extra)
    assert run_cli(cfg, "poll", "--full").code == 0
    api.orders = [{"id": "plain-1", "state": "Pending"}, {"id": ORDER_ID, "state": STATE}]
    code, out = run_on_terminal("--config", str(cfg), "poll", "--full")
    assert code == 0, out
    assert raw_found(out) == [], out
    assert b"is now Paid\\x1b[5m[/bold]" in out
    received = hook.wait_for(2, timeout=20)
    texts = [str(r.body.get(field)) for r in received for field in ("title", "message")]
    for text in texts:
        assert_unsafe_free(text)
    assert any(printable(ORDER_ID) in t for t in texts)
    assert f"{printable(ORDER_ID)} is now {printable(STATE)}\nline two" in texts


def test_a_401_body_is_escaped_in_check_connect(tmp_path: Path, api: HostileApi) -> None:
    """check --connect prints a rejecting server's message escaped."""
    cfg = hostile_config(tmp_path / "ow.toml", api.url, TOKEN)

    def reject(request: Request) -> tuple[int, bytes]:
        return 401, orjson.dumps({"detail": ERROR})

    api.error = reject
    code, out = run_on_terminal("--config", str(cfg), "check", "--connect")
    assert code == 1, out
    assert raw_found(out) == [], out
    assert b"ace: FAILED" in out


def test_printable_escapes_controls_and_keeps_text() -> None:
    """printable shows C0, DEL, C1, bidi and invisible characters and lone surrogates as escapes, nothing else."""
    assert printable("a\x1b[2Jb\r\n\t\x7f\x9b\u202e\u200b\ufeff\ud800") == (
        "a\\x1b[2Jb\\r\\n\\t\\x7f\\x9b\\u202e\\u200b\\ufeff\\ud800"
    )
    kept = "Café 测试 👨\u200d👩\u200d👧 [b]x[/b] \\x1b"
    assert printable(kept) == kept
    assert printable_block("one\r\ntwo\tthree\x1b]0;t\x07") == "one\ntwo\tthree\\x1b]0;t\\x07"


def test_json_printable_keeps_the_value() -> None:
    """json_printable escapes DEL, C1 and bidi characters and the JSON still means the same."""
    value = {"id": ORDER_ID, "state": STATE, "del": "\x7f", "sep": "\u2028"}
    text = json_printable(orjson.dumps(value).decode())
    assert orjson.loads(text) == value
    assert printable(text) == text

"""Configured secrets never printed, logged or sent, whatever quoted them back and in whatever form: a 401 body or an
echoing proxy may return a token as it was sent, percent-encoded, JSON-escaped, broken across lines, or base64'd in
a Basic auth header. The end-to-end tests run the real CLI against a hostile API on loopback."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderwatch.core.redact import MASK, Redactor
from tests.conftest import run_cli
from tests.hostile import HostileApi, Request, hostile_config, run_on_terminal
from tests.receivers import WebhookReceiver

TOKEN = "ow-tok/en+0123456789abcdefXYZ"
HOOK_TOKEN = "hk-7d6c5b4a39281706-path"


def forms(secret: str) -> dict[str, str]:
    """The forms in which a server or a proxy quotes a secret back."""
    return {
        "as sent": secret,
        "percent-encoded": quote(secret, safe=""),
        "percent-encoded, lower-case hex": quote(secret, safe="").replace("%2F", "%2f").replace("%2B", "%2b"),
        "JSON-escaped slash": secret.replace("/", "\\/"),
        "JSON unicode escapes": "".join(f"\\u{ord(c):04x}" if c in "-+" else c for c in secret),
        "broken across lines": f"{secret[:9]}\n    {secret[9:]}",
        "broken by an escaped newline": f"{secret[:12]}\\n{secret[12:]}",
        "Basic auth, empty user": base64.b64encode(f":{secret}".encode()).decode(),
        "Basic auth, user:token": base64.b64encode(f"bot:{secret}".encode()).decode(),
        "base64, URL-safe, unpadded": base64.urlsafe_b64encode(f'{{"t":"{secret}"}}'.encode()).decode().rstrip("="),
    }


def leaked(text: str | bytes, secret: str = TOKEN) -> list[str]:
    """The forms of ``secret`` found in ``text``, and its whole-word parts of eight characters or more."""
    data = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    unescaped = data.replace("\\/", "/").replace("\\u002d", "-").replace("\\u002b", "+").replace("\\n", "")
    found = [name for name, form in forms(secret).items() if form in data]
    if secret in "".join(unescaped.split()):
        found.append("squashed")
    return found


def echo_401(request: Request) -> tuple[int, bytes]:
    """A 401 whose message quotes the request's token back in every form."""
    said = "; ".join(f"{name}: {form}" for name, form in forms(request.token).items())
    return 401, orjson.dumps({"detail": f"Invalid token. {said}"})


@pytest.fixture
def api() -> Iterator[HostileApi]:
    """The hostile API with one order."""
    with HostileApi() as hostile:
        hostile.orders = [{"id": "o-1", "state": "Pending"}]
        yield hostile


def test_a_token_quoted_back_by_a_401_is_in_no_output(tmp_path: Path, api: HostileApi) -> None:
    """poll, check --connect, status (table and JSON), the poll's log lines and the database mask the token in
    every form."""
    cfg = hostile_config(tmp_path / "ow.toml", api.url, TOKEN)
    assert run_cli(cfg, "poll", "--full").code == 0
    api.error = echo_401
    outputs: dict[str, bytes] = {}
    for label, args, code in [
        ("poll", ["poll", "--full"], 1),
        ("poll --log-level debug", ["--log-level", "debug", "poll", "--full"], 1),
        ("check --connect", ["check", "--connect"], 1),
        ("status", ["status"], 0),
        ("status --format json", ["status", "--format", "json"], 0),
    ]:
        got, out = run_on_terminal("--config", str(cfg), *args)
        assert got == code, (label, out)
        outputs[label] = out
    assert b"token rejected (401" in outputs["poll"]
    assert b"Invalid token. as sent: ***" in outputs["check --connect"]
    assert b"Invalid token" in outputs["status"]
    assert {label: leaked(out) for label, out in outputs.items() if leaked(out)} == {}
    assert all(request.token == TOKEN for request in api.requests)
    database = (tmp_path / "ow.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("ow.db-*"))
    assert leaked(database) == [], "the stored last_error holds the token"


def test_a_token_in_an_order_is_masked_in_tables_json_and_notices(tmp_path: Path, api: HostileApi) -> None:
    """An API that puts the token into an order: changes, orders and a templated notice show it masked."""
    with WebhookReceiver(path=f"/hooks/{HOOK_TOKEN}") as hook:
        extra = (
            f'\n[channels.hook]\nurls = ["{hook.url_for_apprise}"]\n\n'
            '[[rules]]\nname = "all"\nevents = ["transition"]\nchannels = ["hook"]\n'
            'body = "{{ order.note }} / {{ order.id }}"\n'
        )
        cfg = hostile_config(tmp_path / "ow.toml", api.url, TOKEN, extra=extra)
        assert run_cli(cfg, "poll", "--full").code == 0
        note = "; ".join(forms(TOKEN).values())
        api.orders = [{"id": f"o-1 {TOKEN}", "state": "Pending"}, {"id": "o-2", "state": "Paid", "note": note}]
        assert run_cli(cfg, "poll", "--full").code == 0
        api.orders[1] = {**api.orders[1], "state": "Refunded"}
        polled = run_cli(cfg, "poll", "--full", "--format", "json")
        assert polled.code == 0, polled.err
        [sent] = hook.wait_for(1, timeout=20)
    outputs = {
        "poll --format json": polled.out + polled.err,
        "changes table": run_cli(cfg, "changes", "--format", "table", env={"COLUMNS": "300"}).out,
        "changes ndjson": run_cli(cfg, "changes", "--format", "ndjson").out,
        "orders json": run_cli(cfg, "orders", "--format", "json").out,
        "webhook": json.dumps(sent.body),
    }
    assert MASK in outputs["webhook"]
    assert orjson.loads(outputs["orders json"])  # still exact JSON after masking
    assert {label: leaked(out) for label, out in outputs.items() if leaked(out)} == {}


def test_debug_logs_print_no_webhook_path(tmp_path: Path, api: HostileApi) -> None:
    """--log-level debug: the HTTP libraries' lines (urllib3's "POST /hooks/…") are not printed."""
    with WebhookReceiver(path="/hooks/Tk7x") as hook:
        extra = (
            f'\n[channels.hook]\nurls = ["{hook.url_for_apprise}"]\n\n'
            '[[rules]]\nname = "all"\nevents = ["transition"]\nchannels = ["hook"]\n'
        )
        cfg = hostile_config(tmp_path / "ow.toml", api.url, TOKEN, extra=extra)
        assert run_cli(cfg, "poll", "--full").code == 0
        api.orders = [{"id": "o-1", "state": "Paid"}]
        ran = run_cli(cfg, "--log-level", "debug", "poll", "--full")
        assert ran.code == 0, ran.err
        assert len(hook.wait_for(1, timeout=20)) == 1
    assert "delivered" in ran.err
    assert "/hooks/" not in ran.err
    assert "urllib3" not in ran.err


# ---- the redactor ---------------------------------------------------------------------------------------------------


def test_every_form_of_a_secret_is_masked() -> None:
    """Each form a server or proxy quotes a secret in is masked, in a sentence and inside JSON."""
    redact = Redactor([TOKEN])
    for name, form in forms(TOKEN).items():
        for text in (f"the token {form} was refused", json.dumps({"detail": f"bad {form}"})[1:-1]):
            masked = redact(text)
            assert leaked(masked) == [], (name, masked)
            assert MASK in masked, name


def test_shapes_are_masked_without_any_secret() -> None:
    """Bearer tokens, Authorization values and URL passwords are masked even when not configured."""
    redact = Redactor([])
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert redact("authorization=Basic dXNlcjpwYXNz") == "authorization=Basic ***"
    assert redact("sent to smtps://bot:hunter2@mail.example.com") == "sent to smtps://bot:***@mail.example.com"


def test_ordinary_text_is_left_alone() -> None:
    """Text without a secret is unchanged: ids, URLs, UUIDs, base64-looking words, short secrets' look-alikes."""
    redact = Redactor([TOKEN, "abc"])
    for text in [
        "order 3f2b8c1e-9d4a-4e6b-8f0a-1c2d3e4f5a6b Pending → Expired",
        "https://checkout.stripe.com/c/pay/cs_test_a1 abcdefghijklmnop",
        "abc is too short to be masked; Zm9vYmFy decodes to foobar",
    ]:
        assert redact(text) == text


SECRET = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\\%"), min_size=8)


@given(SECRET, st.sampled_from(sorted(forms("x" * 12))), st.text(max_size=20), st.text(max_size=20))
def test_a_secret_in_any_form_anywhere_is_masked(secret: str, form: str, before: str, after: str) -> None:
    """Whatever the secret and whatever text surrounds it, none of its forms survives."""
    quoted = forms(secret)[form]
    masked = Redactor([secret])(f"{before} {quoted} {after}")
    assert quoted not in masked

"""Sending through apprise to real loopback receivers: webhook (json://), SMTP (mailto://) and console://."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from orderwatch.core.render import Notice
from orderwatch.delivery import notify
from tests.hostile import SlowWebhook
from tests.receivers import HOST, SmtpReceiver, WebhookReceiver

NOTICE = Notice(title="[ace] order 3f2b8c1e… Pending → Expired", body="Source: ace\nState: Pending → Expired\n月卡")
HOOK_TOKEN = "T0ps3cretW3bhookPathTok"
SMTP_PASSWORD = "hunter2-smtp-Pa55"


@pytest.fixture
def anyio_backend() -> str:
    """apprise's async paths need asyncio."""
    return "asyncio"


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    """A webhook receiver whose path holds a secret token."""
    with WebhookReceiver(path=f"/hooks/{HOOK_TOKEN}") as receiver:
        yield receiver


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """An SMTP server that requires the secret password."""
    with SmtpReceiver(user="bot", password=SMTP_PASSWORD) as receiver:
        yield receiver


def assert_no_secret(*texts: str | None) -> None:
    """None of ``texts`` holds a secret part of the test URLs."""
    for text in texts:
        assert HOOK_TOKEN not in (text or "")
        assert SMTP_PASSWORD not in (text or "")


@pytest.mark.anyio
async def test_email_arrives_with_title_and_body(smtp: SmtpReceiver) -> None:
    """A notice sent to a mailto:// URL arrives at the SMTP server: title as subject, body as text, logged in."""
    [result] = await notify.send([smtp.url_for_apprise(to="finance@example.com")], NOTICE)
    assert result == notify.UrlResult(0, ok=True, permanent=False, reason=None)
    [mail] = smtp.wait_for(1)
    assert mail.subject == NOTICE.title
    assert mail.rcpt_tos == ("finance@example.com",)
    assert mail.login == "bot"
    assert "State: Pending → Expired" in mail.text()
    assert "月卡" in mail.text()


@pytest.mark.anyio
async def test_webhook_gets_one_post_per_send(hook: WebhookReceiver) -> None:
    """Each send posts the title and body once to the json:// receiver."""
    for _ in range(2):
        [result] = await notify.send([hook.url_for_apprise], NOTICE)
        assert result.ok
    posts = hook.wait_for(2)
    assert len(posts) == 2
    assert all(p.path == f"/hooks/{HOOK_TOKEN}" for p in posts)
    assert posts[0].body["title"] == NOTICE.title
    assert posts[0].body["message"] == NOTICE.body


@pytest.mark.anyio
async def test_receiver_down_is_temporary_then_recovers(hook: WebhookReceiver) -> None:
    """A refused connection is a temporary failure with a reason; once the receiver is back the same URL works."""
    hook.stop()
    [down] = await notify.send([hook.url_for_apprise], NOTICE)
    assert not down.ok
    assert not down.permanent
    assert down.reason is not None
    assert "connection" in down.reason.lower()
    assert_no_secret(down.reason)
    hook.start()
    [up] = await notify.send([hook.url_for_apprise], NOTICE)
    assert up.ok
    assert len(hook.wait_for(1)) == 1


@pytest.mark.anyio
async def test_http_error_is_temporary_with_status(hook: WebhookReceiver) -> None:
    """A receiver answering 500 gives a temporary failure whose reason names the status."""
    hook.status = 500
    [result] = await notify.send([hook.url_for_apprise], NOTICE)
    assert (result.ok, result.permanent) == (False, False)
    assert result.reason is not None
    assert "500" in result.reason
    assert_no_secret(result.reason)


@pytest.mark.anyio
async def test_unparseable_url_is_permanent() -> None:
    """A URL apprise cannot use fails permanently and the reason says so."""
    results = await notify.send(["nosuchscheme://host/x", "json://", "plain words"], NOTICE)
    assert [(r.index, r.ok, r.permanent) for r in results] == [(0, False, True), (1, False, True), (2, False, True)]
    assert results[0].reason == "unknown scheme 'nosuchscheme'"
    assert results[1].reason is not None
    assert "cannot use" in results[1].reason
    assert results[2].reason is not None
    assert "not an apprise URL" in results[2].reason


@pytest.mark.anyio
async def test_results_per_url_in_order_and_skip(hook: WebhookReceiver) -> None:
    """Every URL not skipped gets one result, in index order; skipped URLs are not sent to."""
    urls = ["bogus://x", hook.url_for_apprise, "console://", hook.url_for_apprise]
    results = await notify.send(urls, NOTICE, skip={2, 3})
    assert [(r.index, r.ok) for r in results] == [(0, False), (1, True)]
    assert len(hook.wait_for(1)) == 1
    assert len(hook.requests) == 1


@pytest.mark.anyio
async def test_wrong_smtp_password_fails_without_leaking(smtp: SmtpReceiver) -> None:
    """A rejected SMTP login is a temporary failure whose reason does not show the password."""
    url = smtp.url_for_apprise().replace(SMTP_PASSWORD, "wrong-" + SMTP_PASSWORD)
    [result] = await notify.send([url], NOTICE)
    assert (result.ok, result.permanent) == (False, False)
    assert result.reason
    assert_no_secret(result.reason, notify.mask_url(url))
    assert smtp.messages == []


@pytest.mark.anyio
async def test_silent_receiver_times_out() -> None:
    """A receiver that accepts the connection but never answers is maybe sent after the time limit: not a failure
    to retry, since it may have the message."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as silent:
        silent.bind((HOST, 0))
        silent.listen(4)  # never accept(): connections complete in the backlog, no answer ever comes
        port = silent.getsockname()[1]
        url = f"json://{HOST}:{port}/hooks/{HOOK_TOKEN}?cto=2&rto=3"
        [result] = await notify.send([url], NOTICE, url_timeout=0.5)
    assert (result.ok, result.permanent, result.maybe) == (False, False, True)
    assert result.reason is not None
    assert "no answer within 0.5 s after sending: it may have arrived" in result.reason
    assert_no_secret(result.reason)


@pytest.mark.anyio
async def test_a_webhook_slower_than_apprises_read_timeout_is_sent_once() -> None:
    """A webhook answering after 2 s, its URL asking apprise for a 1 s read timeout: waited for, one POST, sent."""
    with SlowWebhook(delay=2.0) as slow:
        [result] = await notify.send([slow.url_for_apprise], NOTICE, url_timeout=5)
        assert (result.ok, result.maybe) == (True, False)
        assert len(slow.posts) == 1


@pytest.mark.anyio
async def test_a_webhook_slower_than_the_time_limit_is_maybe_sent() -> None:
    """A webhook answering after 3 s with a 1 s limit: it got the POST, and the result says it may have it."""
    with SlowWebhook(delay=3.0) as slow:
        [result] = await notify.send([slow.url_for_apprise], NOTICE, url_timeout=1)
        assert (result.ok, result.permanent, result.maybe) == (False, False, True)
        assert len(slow.posts) == 1


@pytest.mark.anyio
async def test_console_prints_title_body_blank_line(capfd: pytest.CaptureFixture[str]) -> None:
    """console:// prints the title line, the body and a blank line to stdout."""
    [result] = await notify.send(["console://"], NOTICE)
    assert result.ok
    out, _ = capfd.readouterr()
    assert out == f"{NOTICE.title}\n{NOTICE.body}\n\n"


def test_check_url_accepts_usable_urls(hook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    """check_url says nothing about URLs apprise can use, console:// included."""
    for url in [hook.url_for_apprise, smtp.url_for_apprise(), "console://", "slack://T1AAAA/B2BBBB/C3CCCCCC"]:
        assert notify.check_url(url) is None


def test_check_url_problems_hold_no_secrets() -> None:
    """check_url describes why a URL cannot be used without showing its secret parts."""
    bad = [
        f"mailto://bot:{SMTP_PASSWORD}@127.0.0.1?to=x@example.com",  # an IP host cannot make a From address
        f"nosuchscheme://user:{SMTP_PASSWORD}@example.com/{HOOK_TOKEN}",
        f"discord://{HOOK_TOKEN}",
        f"not a url {HOOK_TOKEN}",
    ]
    for url in bad:
        problem = notify.check_url(url)
        assert problem
        assert "\n" not in problem
        assert_no_secret(problem)


def test_mask_url_hides_passwords_and_path_tokens(hook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    """mask_url keeps scheme and host but never the password or the webhook path token."""
    masked_hook = notify.mask_url(hook.url_for_apprise)
    assert masked_hook.startswith(f"json://{HOST}:{hook.port}/")
    masked_mail = notify.mask_url(smtp.url_for_apprise())
    assert masked_mail.startswith("mailto://bot:")
    assert HOST in masked_mail
    header = f"json://{HOST}/x?+Authorization=Bearer%20{HOOK_TOKEN}"
    slack = f"slack://TAAAA/BBBBB/{HOOK_TOKEN}/#orders"
    assert_no_secret(masked_hook, masked_mail, notify.mask_url(header), notify.mask_url(slack))


def test_mask_url_of_unparseable_url_is_scheme_only() -> None:
    """A URL apprise cannot parse is shown as its scheme only."""
    assert notify.mask_url(f"nosuchscheme://{HOOK_TOKEN}@x") == "nosuchscheme://…"
    assert notify.mask_url(f"{HOOK_TOKEN} no scheme") == "?://…"


@pytest.mark.parametrize(
    ("reason", "permanent"),
    [
        ("There are no ntfy topics to notify.", True),
        ("Failed to send JSON notification: Not Found - error=404.", True),
        ("Failed to send JSON notification: Internal Server Error - error=500.", False),
        ("A Connection error occurred sending JSON notification to 127.0.0.1.", False),
        ("no answer within 5 s", False),
    ],
)
def test_failure_reasons_that_mean_the_url_cannot_work_are_permanent(reason: str, permanent: bool) -> None:
    """A missing target or a 4xx like 404 is permanent (no retry can help); 5xx, refusals and timeouts are not."""
    assert notify.permanent_reason(reason) is permanent

"""A slow webhook gets each notice once: apprise's own read timeout no longer cuts a slow answer short (which made
every retry a copy), and a send that runs out of orderwatch's time limit after its request went out counts as maybe
sent, is said so, and is not sent again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orderwatch.config import load_config
from orderwatch.delivery.deliverer import Deliverer
from orderwatch.service.daemon import GRACE_PERIOD
from orderwatch.simulator import SimServer, Simulator
from orderwatch.store import OutboxRow, Store
from tests.conftest import ACE_TOKEN, run_cli
from tests.hostile import JsonDaemon, SlowWebhook


def slow_config(path: Path, url: str, hook: SlowWebhook) -> Path:
    """One simulated Ace source; every transition to the slow webhook; quick retries; JSON logs."""
    path.write_text(
        f'database = "{(path.parent / "ow.db").as_posix()}"\n\n'
        '[defaults]\ninterval = "1s"\njitter = "0s"\ntimeout = "5s"\n\n'
        f'[sources.ace]\nkind = "acedata"\nbase_url = "{url}"\ntoken = "{ACE_TOKEN}"\npage_size = 10\n\n'
        f'[channels.slow]\nurls = ["{hook.url_for_apprise}"]\n\n'
        '[[rules]]\nname = "all"\nevents = ["transition"]\nchannels = ["slow"]\n\n'
        '[delivery]\ninterval = "200ms"\nretry_initial = "200ms"\nretry_max = "1s"\n\n[log]\nformat = "json"\n'
    )
    path.chmod(0o600)
    return path


def outbox(database: Path) -> list[OutboxRow]:
    """The outbox, read as the CLI reads it."""
    store = Store.open(database, readonly=True)
    try:
        return store.outbox()
    finally:
        store.close()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Until ``check()`` holds; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.05)


def test_a_webhook_slower_than_apprises_read_timeout_gets_one_copy(
    tmp_path: Path, sim: Simulator, server: SimServer
) -> None:
    """The daemon and a webhook answering after 5 s (apprise's default read timeout is 4 s, the URL asks for 1 s):
    one POST, the row sent, no retry."""
    with SlowWebhook(delay=5.0) as hook:
        cfg = slow_config(tmp_path / "ow.toml", server.url, hook)
        daemon = JsonDaemon(cfg)
        try:
            daemon.wait_log("polled", source="ace", baseline=True)
            key = next(o["id"] for o in sim.orders("ace") if o["state"] == "Pending")
            sim.set_state("ace", key, "Paid")
            wait_until(lambda: [r.status for r in outbox(tmp_path / "ow.db")] == ["sent"], "the row to be sent")
            assert len(hook.posts) == 1
            assert daemon.logs("delivery failed; will retry") == []
            assert daemon.stop(timeout=GRACE_PERIOD) == 0
        finally:
            daemon.close()


@pytest.mark.anyio
async def test_a_send_past_the_time_limit_is_maybe_sent_and_never_repeated(
    tmp_path: Path, sim: Simulator, server: SimServer
) -> None:
    """A webhook slower than the 1 s limit: the POST arrives, the row counts as sent (not retried), and the next
    delivery step sends nothing again."""
    with SlowWebhook(delay=3.0) as hook:
        cfg = slow_config(tmp_path / "ow.toml", server.url, hook)
        assert run_cli(cfg, "poll", "--no-notify").code == 0
        key = next(o["id"] for o in sim.orders("ace") if o["state"] == "Pending")
        sim.set_state("ace", key, "Paid")
        assert run_cli(cfg, "poll", "--no-notify").code == 0
        conf = load_config(cfg)
        store = Store.open(tmp_path / "ow.db")
        try:
            deliver = Deliverer(store, conf.channels, conf.rules, conf.delivery.retry, url_timeout=1.0)
            first = await deliver.deliver_due()
            assert (first.sent, first.retrying, first.failed) == (1, 0, 0)
            assert len(hook.posts) == 1
            [row] = store.outbox()
            assert row.status == "sent"
            again = await deliver.deliver_due()
            assert (again.sent, again.retrying, again.failed) == (0, 0, 0)
            assert len(hook.posts) == 1
        finally:
            store.close()

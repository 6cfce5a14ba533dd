"""Two `orderwatch poll` processes on one database at the same moment, round after round: every net change is
recorded once and notified once, whichever process records it; nothing is recorded twice or lost. Of two baselines
taken at once, one is recorded and the other poll says so and exits 1."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from orderwatch.simulator import SimServer, Simulator
from tests.conftest import ACE_TOKEN, LSKY_TOKEN, config_text
from tests.receivers import WebhookReceiver
from tests.test_e2e_core import expected_events

ROUNDS = 6


def poll_pair(config: Path, mode: str) -> list[tuple[int, str]]:
    """Start two ``orderwatch poll`` processes at once and wait for both; their exit codes and stderr."""
    env = {**os.environ, "NO_COLOR": "1"}
    args = [sys.executable, "-m", "orderwatch", "--config", str(config), "poll", mode]
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    codes = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        codes.append((proc.returncode, err))
    return codes


def recorded(database: Path, after: int) -> list[tuple[str, str, str, str | None, str | None]]:
    """The events recorded after event id ``after``: (source, order, kind, raw_from, raw_to), with repeats."""
    with closing(sqlite3.connect(database)) as db:
        return list(
            db.execute("SELECT source, order_id, kind, raw_from, raw_to FROM events WHERE id > ? ORDER BY id", (after,))
        )


def last_event(database: Path) -> int:
    """The id of the newest event (0: none)."""
    with closing(sqlite3.connect(database)) as db:
        return int(db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])


def test_two_cli_polls_at_once_record_and_notify_each_change_once(tmp_path: Path) -> None:
    """Six rounds of changes, each polled by two processes started together (full and incremental rounds): the
    events of a round are exactly its net changes, each once, and the webhook gets each event's notice once."""
    sim = Simulator(seed=5, ace_token=ACE_TOKEN, lsky_token=LSKY_TOKEN, max_page_size=7)
    sim.add_ace(30)
    sim.add_lsky(30)
    database = tmp_path / "ow.db"
    with SimServer(sim) as server, WebhookReceiver(path="/hooks/pair") as hook:
        rule = (
            f'[channels.ops]\nurls = ["{hook.url_for_apprise}"]\ndigest_over = 1000\n\n[[rules]]\nchannels = ["ops"]\n'
        )
        rule += 'events = ["appeared", "transition", "vanished"]\n'
        config = tmp_path / "ow.toml"
        config.write_text(config_text(server.url, database, extra=rule, page_size=7))
        for code, err in poll_pair(config, "--full"):  # one baseline wins; the other poll of a source refuses
            assert code == 0 or "another poll took the baseline" in err, err
        for round_ in range(ROUNDS):
            mark, after = len(sim.history), last_event(database)
            sim.add_ace(2)
            sim.add_lsky(1)
            sim.step(12)
            want = expected_events(sim.history[mark:])
            for code, err in poll_pair(config, "--full" if round_ % 2 else "--incremental"):
                assert code == 0, err
            got = recorded(database, after)
            # an incremental round may leave a deletion to a later poll; a third poll settles what both left
            assert len(got) == len(set(got)), f"round {round_}: recorded twice: {got}"
            subprocess.run(
                [sys.executable, "-m", "orderwatch", "--config", str(config), "poll", "--full"],
                env={**os.environ, "NO_COLOR": "1"},
                capture_output=True,
                timeout=120,
                check=False,
            )
            got = recorded(database, after)
            assert sorted(got) == sorted(want), f"round {round_}"
        with closing(sqlite3.connect(database)) as db:
            notices = db.execute("SELECT count(*) FROM outbox WHERE status = 'sent'").fetchone()[0]
            events = db.execute("SELECT count(*) FROM events").fetchone()[0]
        titles = [m.body["title"] for m in hook.wait_for(notices)]
    assert len(titles) == len(set(titles)) == events

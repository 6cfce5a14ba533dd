"""The command line: dry runs, following changes, filters, check --connect, and exit codes."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from pathlib import Path

import orjson

from orderwatch.simulator import Simulator
from tests.conftest import run_cli

WAIT = 20.0


def test_dry_run_prints_events_but_writes_nothing(config_file: Path, sim: Simulator) -> None:
    """poll --dry-run shows what a poll would record, and the database stays as it was."""
    assert run_cli(config_file, "poll").code == 0
    key = sim.orders("ace")[0]["id"]
    sim.set_state("ace", key, "Expired")
    dry = run_cli(config_file, "poll", "--dry-run", "--format", "ndjson")
    assert dry.code == 0, dry.err
    assert [(e["order_id"], e["to_state"], e["id"]) for e in dry.ndjson()] == [(key, "Expired", None)]
    assert run_cli(config_file, "changes", "--format", "ndjson").ndjson() == []
    real = run_cli(config_file, "poll", "--format", "ndjson")
    assert [(e["order_id"], e["to_state"]) for e in real.ndjson()] == [(key, "Expired")]


def test_dry_run_without_a_database_creates_none(config_file: Path) -> None:
    """A dry run before any poll reads nothing and leaves no database file behind."""
    before = set(Path.cwd().iterdir())
    ran = run_cli(config_file, "poll", "--dry-run")
    assert ran.code == 0, ran.err
    assert not (config_file.parent / "ow.db").exists()
    assert set(Path.cwd().iterdir()) == before


def test_changes_filters_by_kind_state_source_order_and_time(config_file: Path, sim: Simulator) -> None:
    """changes --kind/--state/--source/--order/--since/--limit select the recorded events."""
    assert run_cli(config_file, "poll").code == 0
    ace = sim.orders("ace")[0]["id"]
    lsky = sim.orders("lsky")[0]["trade_no"]
    sim.set_state("ace", ace, "Paid")
    sim.set_state("lsky", lsky, "cancelled")
    sim.add_ace(1)
    assert run_cli(config_file, "poll").code == 0

    def changes(*args: str) -> list[tuple[str, str]]:
        ran = run_cli(config_file, "changes", "--format", "ndjson", *args)
        assert ran.code == 0, ran.err
        return [(e["source"], e["kind"]) for e in ran.ndjson()]

    assert sorted(changes()) == [("ace", "appeared"), ("ace", "transition"), ("images", "transition")]
    assert changes("--kind", "appeared") == [("ace", "appeared")]
    assert changes("--state", "cancelled") == [("images", "transition")]
    assert changes("--source", "images") == [("images", "transition")]
    assert changes("--order", ace) == [("ace", "transition")]
    assert len(changes("--since", "1h")) == 3
    assert changes("--since", "2999-01-01T00:00:00Z") == []
    assert len(changes("--limit", "2")) == 2
    bad = run_cli(config_file, "changes", "--since", "yesterday-ish")
    assert bad.code == 2
    assert "--since" in bad.err


def test_changes_follow_prints_new_events_as_they_are_recorded(config_file: Path, sim: Simulator) -> None:
    """changes --follow keeps running and prints an event recorded by another process, one NDJSON line."""
    assert run_cli(config_file, "poll").code == 0
    with subprocess.Popen(
        [sys.executable, "-m", "orderwatch", "--config", str(config_file), "changes", "--follow", "--format", "ndjson"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    ) as follower:
        try:
            key = sim.orders("ace")[1]["id"]
            sim.set_state("ace", key, "Failed")
            polled = run_cli(config_file, "poll")
            assert polled.code == 0, polled.err
            assert follower.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(follower.stdout, selectors.EVENT_READ)
                assert selector.select(timeout=WAIT), "changes --follow printed nothing"
            event = orjson.loads(follower.stdout.readline())
            assert (event["order_id"], event["to_state"]) == (key, "Failed")
        finally:  # a failed assertion must not leave the follower running (the with block would wait for it)
            follower.terminate()
            assert follower.wait(timeout=WAIT) is not None


def test_check_connect_reports_each_source_and_fails_on_a_rejected_token(config_file: Path, sim: Simulator) -> None:
    """check --connect fetches one page per source: OK lines, then exit 1 naming the source whose token is refused."""
    ok = run_cli(config_file, "check", "--connect")
    assert ok.code == 0, ok.err
    assert "config OK" in ok.out
    assert "ace: OK" in ok.out
    assert "images: OK" in ok.out
    sim.revoke("lsky")
    bad = run_cli(config_file, "check", "--connect")
    assert bad.code == 1
    assert "images: FAILED — token rejected (401" in bad.out
    assert "ace: OK" in bad.out


def test_usage_errors_exit_2(config_file: Path) -> None:
    """An unknown source name or a missing config file is bad usage: exit 2 with a one-line reason."""
    unknown = run_cli(config_file, "poll", "nosuch")
    assert unknown.code == 2
    assert "unknown source 'nosuch'" in unknown.err
    missing = run_cli(config_file.with_name("absent.toml"), "poll")
    assert missing.code == 2
    assert "absent.toml" in missing.err


def test_orders_lists_the_snapshot_with_states(config_file: Path, sim: Simulator) -> None:
    """orders --state/--source filter the snapshot; the order as the API returned it is included."""
    assert run_cli(config_file, "poll").code == 0
    key = sim.orders("lsky")[0]["trade_no"]
    sim.set_state("lsky", key, "paid")
    assert run_cli(config_file, "poll").code == 0
    paid = run_cli(config_file, "orders", "--source", "images", "--state", "paid", "--format", "json")
    rows = orjson.loads(paid.out)
    assert [(r["order_id"], r["state"], r["raw_state"], r["order"]["status"]) for r in rows] == [
        (key, "Paid", "paid", "paid")
    ]
    table = run_cli(config_file, "orders", "--format", "table", env={"COLUMNS": "200"})
    assert table.code == 0
    assert key in table.out


def test_a_readable_config_with_inline_secrets_draws_a_warning(config_file: Path) -> None:
    """A config readable by group/others holding an inline token warns naming the keys; mode 0600 does not warn."""
    config_file.chmod(0o644)
    loud = run_cli(config_file, "check")
    assert loud.code == 0
    assert "is readable by others and holds secrets inline (sources.ace.token, sources.images.token)" in loud.err
    config_file.chmod(0o600)
    quiet = run_cli(config_file, "check")
    assert quiet.code == 0
    assert "readable by others" not in quiet.err

"""End to end: the real CLI against the simulator over real HTTP, for both API formats."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from orderwatch.simulator import SimChange, SimServer, Simulator
from tests.conftest import Ran, config_text, run_cli

LSKY_CANONICAL = {"unpaid": "Pending", "paid": "Paid", "cancelled": "Cancelled"}
SOURCE_OF = {"ace": "ace", "lsky": "images"}
CONTRACT_FIELDS = {
    "id",
    "source",
    "order_id",
    "kind",
    "from_state",
    "to_state",
    "raw_from",
    "raw_to",
    "detected_at",
    "order",
}


def canonical(api: str, raw: str | None) -> str | None:
    if raw is None:
        return None
    return LSKY_CANONICAL[raw] if api == "lsky" else raw


def expected_events(changes: list[SimChange]) -> set[tuple[str, str, str, str | None, str | None]]:
    """The events the simulator's record of changes must produce: (source, order, kind, raw_from, raw_to)."""
    out: dict[tuple[str, str], tuple[str, str, str, str | None, str | None]] = {}
    first_from: dict[tuple[str, str], str | None] = {}
    for ch in changes:
        k = (ch.api, ch.key)
        first_from.setdefault(k, ch.from_state)
        src = SOURCE_OF[ch.api]
        if ch.kind == "created":
            out[k] = (src, ch.key, "appeared", None, ch.to_state)
        elif ch.kind == "deleted":
            if k in out and out[k][2] == "appeared":
                del out[k]
            else:
                out[k] = (src, ch.key, "vanished", first_from[k], None)
        elif k in out and out[k][2] == "appeared":
            out[k] = (src, ch.key, "appeared", None, ch.to_state)
        elif canonical(ch.api, first_from[k]) != canonical(ch.api, ch.to_state):
            out[k] = (src, ch.key, "transition", first_from[k], ch.to_state)
        else:
            out.pop(k, None)
    return set(out.values())


def got_events(ran: Ran) -> set[tuple[str, str, str, str | None, str | None]]:
    return {(e["source"], e["order_id"], e["kind"], e["raw_from"], e["raw_to"]) for e in ran.ndjson()}


def test_baseline_is_silent_and_records_every_order(config_file: Path, sim: Simulator) -> None:
    """The first poll prints no event, says it recorded a baseline, and stores every order of both APIs."""
    ran = run_cli(config_file, "poll", "--format", "ndjson")
    assert ran.code == 0, ran.err
    assert ran.ndjson() == []
    assert "baseline of 12 orders" in ran.err
    orders = run_cli(config_file, "orders", "--format", "ndjson").ndjson()
    assert {(o["source"], o["order_id"]) for o in orders} == {
        *(("ace", o["id"]) for o in sim.orders("ace")),
        *(("images", o["trade_no"]) for o in sim.orders("lsky")),
    }


@pytest.mark.parametrize("mode", ["--full", "--incremental"])
def test_every_change_between_two_polls_is_one_event_with_raw_and_canonical_states(
    config_file: Path, sim: Simulator, mode: str
) -> None:
    """Changes made between polls appear exactly once with the right states, by full sweep or incremental poll.

    An incremental poll reports everything but deletions; the next full sweep reports exactly those as vanished.
    """
    assert run_cli(config_file, "poll").code == 0
    mark = len(sim.history)
    ace = [o["id"] for o in sim.orders("ace")]
    lsky = [o["trade_no"] for o in sim.orders("lsky")]
    sim.set_state("ace", ace[0], "Expired")
    sim.set_state("ace", ace[1], "Paid")
    sim.set_state("ace", ace[2], "Paid")
    sim.set_state("ace", ace[2], "Finished")
    sim.set_state("lsky", lsky[0], "paid")
    sim.set_state("lsky", lsky[1], "cancelled")
    sim.set_state("lsky", lsky[2], "cancelled")
    sim.delete("lsky", lsky[2])
    sim.add_ace(3)
    sim.add_lsky(2)
    sim.step(15)
    changes = sim.history[mark:]

    expected = expected_events(changes)
    ran = run_cli(config_file, "poll", mode, "--format", "ndjson")
    assert ran.code == 0, ran.err
    assert got_events(ran) == expected
    assert len(ran.ndjson()) == len(expected)
    for event in ran.ndjson():
        assert set(event) == CONTRACT_FIELDS
        api = "ace" if event["source"] == "ace" else "lsky"
        assert event["from_state"] == canonical(api, event["raw_from"])
        assert event["to_state"] == canonical(api, event["raw_to"])
        assert event["detected_at"].endswith("Z")
    transition = next(e for e in ran.ndjson() if e["order_id"] == lsky[0])
    assert (transition["from_state"], transition["to_state"]) == ("Pending", "Paid")
    assert transition["order"]["trade_no"] == lsky[0]

    again = run_cli(config_file, "poll", "--full", "--format", "ndjson")
    assert again.code == 0
    assert got_events(again) == expected_events(changes) - expected
    assert run_cli(config_file, "poll", "--format", "ndjson").ndjson() == []
    recorded = run_cli(config_file, "changes", "--format", "json")
    assert recorded.code == 0
    assert {
        (e["source"], e["order_id"], e["kind"], e["raw_from"], e["raw_to"]) for e in orjson.loads(recorded.out)
    } == expected_events(changes)


def test_deleted_lsky_order_vanishes_only_after_a_complete_sweep(config_file: Path, sim: Simulator) -> None:
    """A deleted cancelled order is not reported while a later page fails, and is reported once a sweep completes."""
    assert run_cli(config_file, "poll").code == 0
    gone = sim.orders("lsky")[0]["trade_no"]
    sim.set_state("lsky", gone, "cancelled")
    cancelled = run_cli(config_file, "poll", "images", "--format", "ndjson")
    assert [(e["order_id"], e["to_state"]) for e in cancelled.ndjson()] == [(gone, "Cancelled")]
    sim.delete("lsky", gone)

    # Page 1 answers (slowly but correctly); page 2 fails, and a zero retry budget means it is not retried.
    no_retry = config_file.with_name("no-retry.toml")
    no_retry.write_text(config_file.read_text().replace('timeout = "5s"', 'timeout = "5s"\nretry_budget = "0s"'))
    sim.faults.slow_seconds = 0.01
    sim.inject("lsky", "slow")
    sim.inject("lsky", "http500", 3)
    partial = run_cli(no_retry, "poll", "images", "--full", "--format", "ndjson")
    assert partial.code == 1
    assert "page at 2 failed: HTTP 500" in partial.err
    assert [e for e in partial.ndjson() if e["kind"] == "vanished"] == []

    with sim.lock:
        sim.faults.queue["lsky"].clear()
    healed = run_cli(config_file, "poll", "images", "--full", "--format", "ndjson")
    assert healed.code == 0, healed.err
    vanished = [e for e in healed.ndjson() if e["kind"] == "vanished"]
    assert [(e["order_id"], e["from_state"], e["raw_from"]) for e in vanished] == [(gone, "Cancelled", "cancelled")]
    assert vanished[0]["order"]["trade_no"] == gone


def test_clamped_page_sizes_lose_no_order(tmp_path: Path, sim: Simulator, server: SimServer) -> None:
    """With the server clamping pages to 7 while 100 are asked, every one of many orders is stored."""
    sim.add_ace(60)
    sim.add_lsky(45)
    cfg = tmp_path / "big.toml"
    cfg.write_text(config_text(server.url, tmp_path / "big.db", page_size=100))
    assert run_cli(cfg, "poll").code == 0
    stored = run_cli(cfg, "orders", "--format", "ndjson").ndjson()
    assert sum(o["source"] == "ace" for o in stored) == len(sim.orders("ace")) == 72
    assert sum(o["source"] == "images" for o in stored) == len(sim.orders("lsky")) == 57


def test_json_format_is_one_array_with_the_contract_fields(config_file: Path, sim: Simulator) -> None:
    """--format json prints one JSON array whose events carry exactly the contract's fields."""
    assert run_cli(config_file, "poll").code == 0
    sim.set_state("ace", sim.orders("ace")[0]["id"], "Failed")
    ran = run_cli(config_file, "poll", "--format", "json")
    events = orjson.loads(ran.out)
    assert isinstance(events, list) and len(events) == 1
    assert set(events[0]) == CONTRACT_FIELDS
    assert (events[0]["kind"], events[0]["to_state"], events[0]["raw_to"]) == ("transition", "Failed", "Failed")
    assert isinstance(events[0]["id"], int)

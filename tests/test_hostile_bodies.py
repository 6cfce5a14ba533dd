"""Malformed bodies from an orders API — JSON nested too deeply for the parser, a lone surrogate, a body too large to
hold — end as a recorded failure of that source with a reason: no traceback, the other sources still polled, and a
later good answer recovers. Each test runs the real CLI against a hostile API on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orderwatch.errors import MalformedResponse
from orderwatch.sources import make_source
from orderwatch.sweep.http import unreadable_is_malformed
from tests.conftest import run_cli
from tests.hostile import HostileApi, hostile_config

TOKEN = "hostile-bodies-token-0123456789abcdef"
DEEP = b'{"count": 1, "items": [{"id": "a", "state": "Paid", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}]}"
SURROGATE = b'{"count": 1, "items": [{"id": "a\\ud800", "state": "Paid"}]}'
# integers beyond 64 bits send the body through the stdlib's exact parser, which is the one that recurses
DEEP_EXACT = b'{"count": 12345678901234567890123, "items": [' + b"[" * 200_000 + b"]" * 200_000 + b"]}"


@pytest.fixture
def apis() -> Iterator[tuple[HostileApi, HostileApi]]:
    """A hostile API and a well-behaved one, each with one order."""
    with HostileApi() as bad, HostileApi() as good:
        bad.orders = [{"id": "b-1", "state": "Pending"}]
        good.orders = [{"id": "g-1", "state": "Pending"}]
        yield bad, good


def two_sources(tmp_path: Path, bad: HostileApi, good: HostileApi) -> Path:
    """A config with the hostile source ``ace`` and a second, healthy source ``fine``."""
    extra = f'\n[sources.fine]\nkind = "acedata"\nbase_url = "{good.url}"\ntoken = "{TOKEN}"\ntimeout = "5s"\n'
    return hostile_config(tmp_path / "ow.toml", bad.url, TOKEN, extra=extra)


@pytest.mark.parametrize(
    ("body", "reason"),
    [(DEEP, "nested too deeply"), (DEEP_EXACT, "nested too deeply"), (SURROGATE, "not valid Unicode")],
    ids=["deep", "deep-exact", "lone-surrogate"],
)
def test_a_malformed_body_is_a_recorded_failure_not_a_crash(
    tmp_path: Path, apis: tuple[HostileApi, HostileApi], body: bytes, reason: str
) -> None:
    """The poll exits 1 naming the reason, without a traceback; the healthy source is polled; status records it."""
    bad, good = apis
    cfg = two_sources(tmp_path, bad, good)
    assert run_cli(cfg, "poll", "--full").code == 0
    bad.error = lambda request: (200, body)
    good.orders = [{"id": "g-1", "state": "Paid"}]
    ran = run_cli(cfg, "poll", "--full", "--format", "ndjson")
    assert ran.code == 1, ran.err
    assert "Traceback" not in ran.err + ran.out
    assert reason in ran.err + ran.out
    assert [(e["source"], e["order_id"], e["raw_to"]) for e in ran.ndjson()] == [("fine", "g-1", "Paid")]
    status = run_cli(cfg, "status")
    assert reason in status.out, status.out
    bad.error = None
    bad.orders = [{"id": "b-1", "state": "Paid"}]
    again = run_cli(cfg, "poll", "--full", "--format", "ndjson")
    assert again.code == 0, again.err
    assert [(e["source"], e["order_id"], e["raw_to"]) for e in again.ndjson()] == [("ace", "b-1", "Paid")]


def test_running_out_of_memory_while_parsing_is_a_malformed_answer() -> None:
    """A MemoryError raised while an answer is read becomes a MalformedResponse of that source."""
    src = make_source("ace", "acedata", "http://127.0.0.1:9", token=TOKEN)
    with pytest.raises(MalformedResponse, match="too large to read"), unreadable_is_malformed(src):
        raise MemoryError

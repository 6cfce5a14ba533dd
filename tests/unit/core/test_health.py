"""Source health decisions (pure) on rows of a real database, and what ``orderwatch status`` reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orderwatch.cli.status import COLUMNS, source_status
from orderwatch.config import load_config
from orderwatch.core.health import Thresholds, assess, unhealthy
from orderwatch.store import SourceState, Store

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    """The stored timestamp ``seconds`` after T0."""
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh database."""
    s = Store.open(tmp_path / "ow.db")
    try:
        yield s
    finally:
        s.close()


def fail(store: Store, source: str, seconds: float, error: str = "HTTP 503 from the API") -> SourceState:
    """Record a failed poll of ``source`` at T0 + ``seconds``."""
    return store.record_failure(source, error, now=at(seconds))


def test_alert_after_consecutive_failures(store: Store) -> None:
    """The alert comes with the Nth failure in a row, not before, and names the source and the last error."""
    rules = Thresholds(failures=3)
    assert assess(fail(store, "ace", 0), rules, ok=False, now=at(0)) is None
    assert assess(fail(store, "ace", 30), rules, ok=False, now=at(30)) is None
    notice = assess(fail(store, "ace", 60), rules, ok=False, now=at(60))
    assert notice is not None
    assert notice.kind == "alert"
    assert notice.title == 'orderwatch: source "ace" is failing'
    assert "3 poll(s) in a row" in notice.body
    assert "HTTP 503 from the API" in notice.body


def test_one_alert_per_failing_streak(store: Store) -> None:
    """Once the alert is out (remembered in the database), further failures send nothing more."""
    rules = Thresholds(failures=1)
    assert assess(fail(store, "ace", 0), rules, ok=False, now=at(0)) is not None
    store.set_alerted("ace", True)
    for second in (30, 60, 90):
        assert assess(fail(store, "ace", second), rules, ok=False, now=at(second)) is None


def test_alert_after_a_failing_duration(store: Store) -> None:
    """With health.after, a source failing that long is unhealthy even below the failure count."""
    rules = Thresholds(failures=100, after=60.0)
    assert assess(fail(store, "ace", 0), rules, ok=False, now=at(0)) is None
    assert assess(fail(store, "ace", 59), rules, ok=False, now=at(59)) is None
    state = fail(store, "ace", 61)
    assert unhealthy(state, rules, at(61))
    notice = assess(state, rules, ok=False, now=at(61))
    assert notice is not None
    assert "failing for 1m01s" in notice.body


def test_recovery_once_after_an_alert(store: Store) -> None:
    """A success after an alert sends one recovery notice; a success without an alert sends nothing."""
    rules = Thresholds(failures=1)
    failed = fail(store, "ace", 0)
    recovered = dataclasses.replace(failed, failures=0, failing_since=None, last_success_at=at(30))
    assert assess(recovered, rules, ok=True, now=at(30)) is None
    notice = assess(dataclasses.replace(recovered, alerted=True), rules, ok=True, now=at(30))
    assert notice is not None
    assert notice.kind == "recovery"
    assert notice.title == 'orderwatch: source "ace" recovered'


def test_auth_failure_says_what_to_fix(store: Store) -> None:
    """A rejected token counts as a failure, and its alert says which setting to fix."""
    rules = Thresholds(failures=1)
    state = fail(store, "images", 0, "token rejected (401)")
    notice = assess(state, rules, ok=False, now=at(0), auth_failed=True)
    assert notice is not None
    assert "sources.images.token" in notice.body
    plain = assess(state, rules, ok=False, now=at(0))
    assert plain is not None
    assert "sources.images.token" not in plain.body


def test_status_rows(tmp_path: Path, store: Store) -> None:
    """status: one row per configured source (never-polled ones too), then unconfigured ones, and the queue depth."""
    config = tmp_path / "orderwatch.toml"
    config.write_text(
        'database = "ow.db"\n'
        '[sources.ace]\nkind = "acedata"\nbase_url = "http://127.0.0.1:9"\ntoken = "ace-secret-token-0123"\n'
        '[sources.images]\nkind = "lsky"\nbase_url = "http://127.0.0.1:9"\ntoken = "lsky-secret-token-0123"\n'
    )
    conf = load_config(config, environ={})
    fail(store, "ace", 0, "connection refused")
    fail(store, "ace", 30, "connection refused")
    store.set_next_poll("ace", at(60))
    fail(store, "old", 0)
    store.enqueue_notice("ops", "health", "title", "body", now=at(0))

    rows, depth = source_status(conf, store)
    assert depth == 1
    assert [r["source"] for r in rows] == ["ace", "images", "old (not configured)"]
    assert all(tuple(r) == COLUMNS for r in rows)
    ace, images, _old = rows
    assert ace["failures"] == 2
    assert ace["last success"] == "never"
    assert ace["last error"] == "2026-11-22T10:00:30Z connection refused"
    assert ace["next poll"] == "2026-11-22T10:01:00Z"
    assert images == {
        "source": "images",
        "last success": "never",
        "last error": "",
        "failures": 0,
        "next poll": "",
        "orders": 0,
    }

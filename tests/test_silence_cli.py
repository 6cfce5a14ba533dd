"""``orderwatch silence`` and ``orderwatch outbox`` from the command line: usage errors exit 2 naming the value;
silences are listed, expired, and outbox says why each row waits."""

from __future__ import annotations

import json
from pathlib import Path

from orderwatch.store import Store
from tests.conftest import run_cli
from tests.test_policies_config import BASE

CONFIG = (
    BASE.replace(
        'urls = ["json://127.0.0.1:9/hook"]\n',
        'urls = ["json://127.0.0.1:9/hook"]\nquiet = "22:00-07:00"\ntimezone = "Europe/Berlin"\n',
    )
    + '[[rules]]\nname = "paid"\nto = ["Paid"]\nchannels = ["ops"]\n'
)


def config(tmp_path: Path) -> Path:
    """A config with source "ace", channel "ops" (quiet hours) and rule "paid"."""
    path = tmp_path / "orderwatch.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_silence_add_refuses_bad_durations_sources_and_rules_with_exit_2(tmp_path: Path) -> None:
    """A duration that is not one, an unknown source or rule: exit 2, the bad value named."""
    path = config(tmp_path)
    bad_for = run_cli(path, "silence", "add", "--source", "ace", "--for", "a while")
    assert bad_for.code == 2 and "'a while'" in bad_for.err
    bad_source = run_cli(path, "silence", "add", "--source", "shop", "--for", "1h")
    assert bad_source.code == 2 and "unknown source 'shop' (configured: ace)" in bad_source.err
    bad_rule = run_cli(path, "silence", "add", "--source", "ace", "--rule", "refunds", "--for", "1h")
    assert bad_rule.code == 2 and "unknown rule 'refunds' (configured: paid)" in bad_rule.err
    assert run_cli(path, "silence", "expire", "x").code == 2


def test_silences_are_listed_until_expired_then_only_with_all(tmp_path: Path) -> None:
    """list shows the silences in force; after expire, only --all shows it (as ended)."""
    path = config(tmp_path)
    added = run_cli(path, "silence", "add", "--source", "ace", "--order", "o-1", "--rule", "paid", "--for", "30m")
    assert added.code == 0, added.err
    assert added.out.startswith("silence #1 added: source ace, order o-1, rule paid until ")
    listed = json.loads(run_cli(path, "silence", "list", "--format", "json").out)
    assert [(s["id"], s["order_id"], s["rule"], s["active"]) for s in listed] == [(1, "o-1", "paid", True)]
    assert run_cli(path, "silence", "expire", "#1").code == 0
    assert json.loads(run_cli(path, "silence", "list", "--format", "json").out) == []
    [ended] = json.loads(run_cli(path, "silence", "list", "--all", "--format", "json").out)
    assert (ended["id"], ended["active"]) == (1, False) and ended["expired_at"] is not None


def test_outbox_says_why_each_row_waits(tmp_path: Path) -> None:
    """A row held by quiet hours, one waiting for a retry, one due: the why column and field say so."""
    path = config(tmp_path)
    store = Store.open(tmp_path / "ow.db")
    try:
        held = store.enqueue_notice("ops", "health", "a", "b", now="2026-11-23T22:00:00.000000Z")
        store.hold(held, until="2099-11-24T06:00:00.000000Z", reason="quiet")
        retry = store.enqueue_notice("ops", "health", "c", "d", now="2026-11-23T22:00:00.000000Z")
        store.mark_retry(retry, next_at="2099-11-24T06:30:00.000000Z", error="refused", done_urls=[])
        store.enqueue_notice("ops", "health", "e", "f", now="2026-11-23T22:00:00.000000Z")
    finally:
        store.close()
    rows = json.loads(run_cli(path, "outbox", "--format", "json").out)
    assert [r["why"] for r in rows] == [
        "quiet hours until 07:00 Europe/Berlin",
        "retry at 2099-11-24T06:30:00Z",
        "due",
    ]
    table = run_cli(path, "outbox", "--format", "table", env={"COLUMNS": "250"}).out
    assert "quiet hours until 07:00 Europe/Berlin" in table

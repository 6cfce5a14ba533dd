"""End to end: the real CLI against an Ace orders API built on Django REST framework and django-filter.

The server (``tests/drf``) is the frameworks' own code in its own process: LimitOffsetPagination (``results``,
``next`` links, a silent ``max_limit``), django-filter's three ways of declaring ``state``, OrderingFilter, a
router's detail route behind ``APPEND_SLASH``, decimals as strings and times without zero microseconds. The test
changes its orders by writing the same SQLite file the server reads.
"""

from __future__ import annotations

import select
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import ACE_TOKEN, Ran, config_text, run_cli

ROOT = Path(__file__).resolve().parent.parent
MAX_LIMIT = 10  # the paginator's clamp; the config asks for 100 a page
START = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


@dataclass
class DrfApi:
    """A running DRF server and the SQLite file behind it."""

    url: str
    db: Path
    made: int = 0

    def _conn(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db, timeout=20, isolation_level=None)

    def add(self, n: int, state: str = "Pending") -> list[str]:
        """Create ``n`` orders, each newer than the last; every fifth shares its creation time with the one before
        (the list is sorted by ``created_at`` alone, with no tie-breaker) and some have no microseconds."""
        ids, rows = [], []
        for _ in range(n):
            self.made += 1
            step = self.made - (self.made % 5 == 0)
            created = START + timedelta(minutes=7 * step, microseconds=0 if step % 3 == 0 else 1000 * step + 7)
            key = uuid.uuid4()
            ids.append(str(key))
            stamp = created.strftime("%Y-%m-%d %H:%M:%S.%f")
            way = ("Stripe", "Card", "AliPay")[self.made % 3]
            ids4 = (key.hex, uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex)
            rows.append((*ids4, 100 * self.made, f"{self.made}.99", way, f"pay_{key.hex[:8]}", state, stamp, stamp))
        with self._conn() as conn:
            conn.executemany(
                "INSERT INTO orders (id, user_id, application_id, package_id, amount, price, discount, pay_way,"
                " pay_id, pay_url, state, remaining_amount, applications, packages, tags, metadata, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, 1.0, ?, ?, '', ?, 0, '[]', '[]', NULL, NULL, ?, ?)",
                rows,
            )
        return ids

    def set_state(self, key: str, state: str) -> None:
        """Move one order to ``state`` (and touch its ``updated_at``)."""
        with self._conn() as conn:
            now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            conn.execute("UPDATE orders SET state = ?, updated_at = ? WHERE id = ?", (state, now, uuid.UUID(key).hex))

    def delete(self, key: str) -> None:
        """Delete one order."""
        with self._conn() as conn:
            conn.execute("DELETE FROM orders WHERE id = ?", (uuid.UUID(key).hex,))

    def ids(self, state: str | None = None) -> list[str]:
        """The ids of every order (in ``state``) as the API spells them, oldest first."""
        sql = "SELECT id FROM orders" + (" WHERE state = ?" if state else "") + " ORDER BY created_at, id"
        with self._conn() as conn:
            return [str(uuid.UUID(k)) for (k,) in conn.execute(sql, (state,) if state else ())]


@contextmanager
def serve(db: Path, filters: str) -> Iterator[DrfApi]:
    """Run the DRF server on a free loopback port until the test ends (its request log beside the database)."""
    log = db.with_suffix(".log")
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.drf.serve", str(db), ACE_TOKEN, filters, str(MAX_LIMIT)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            pytest.fail(f"the DRF server did not start: {line!r} {log.read_text()[-2000:]}")
        yield DrfApi(line.split()[1], db)
    finally:
        proc.kill()
        proc.communicate(timeout=10)


@pytest.fixture
def drf(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DrfApi]:
    """The DRF server (``filterset_fields``, or the declaration of ``state`` a test names) with 400 orders, the
    newest open: 300 Finished, 60 Expired, 40 Pending (few enough open that an incremental poll is cheaper)."""
    with serve(tmp_path / "drf.db", getattr(request, "param", "plain")) as api:
        api.add(300, "Finished")
        api.add(60, "Expired")
        api.add(40, "Pending")
        yield api


def config(api: DrfApi, tmp_path: Path) -> Path:
    """An orderwatch config for the DRF server alone, asking for more per page than it gives."""
    path = tmp_path / "orderwatch.toml"
    path.write_text(config_text(api.url, tmp_path / "ow.db", page_size=100, sources="ace"))
    return path


def events(ran: Ran) -> set[tuple[str, str, str | None, str | None]]:
    """The events a poll printed: (order, kind, raw_from, raw_to)."""
    assert ran.code == 0, ran.err
    found = [(e["order_id"], e["kind"], e["raw_from"], e["raw_to"]) for e in ran.ndjson()]
    assert len(found) == len(set(found)), f"an event was reported twice: {found}"
    return set(found)


def test_baseline_over_drf_stores_every_order_despite_the_silent_clamp(drf: DrfApi, tmp_path: Path) -> None:
    """A first poll pages through the clamped DRF list (results, next links, ties) and stores every order."""
    cfg = config(drf, tmp_path)
    ran = run_cli(cfg, "poll", "--format", "ndjson")
    assert events(ran) == set()
    assert "baseline of 400 orders" in ran.err
    stored = run_cli(cfg, "orders", "--format", "ndjson").ndjson()
    assert sorted(o["order_id"] for o in stored) == sorted(drf.ids())
    assert {o["order_id"] for o in stored if o["state"] == "Pending"} == set(drf.ids("Pending"))


@pytest.mark.parametrize(
    ("drf", "mode"),
    [("plain", "--full"), ("plain", "--incremental"), ("in", "--incremental"), ("choice", "--incremental")],
    indirect=["drf"],
)
def test_every_change_on_a_drf_server_is_reported_once(drf: DrfApi, tmp_path: Path, mode: str) -> None:
    """Transitions, a settled order refunded, new orders and a deletion on the DRF server are each one event, by
    full sweep or incremental poll, and the polls after it report nothing more."""
    cfg = config(drf, tmp_path)
    assert run_cli(cfg, "poll").code == 0
    pending, finished, expired = drf.ids("Pending"), drf.ids("Finished"), drf.ids("Expired")
    drf.set_state(pending[1], "Expired")
    drf.set_state(pending[2], "Paid")
    drf.set_state(pending[3], "Paid")
    drf.set_state(pending[3], "Finished")
    drf.set_state(finished[7], "Refunded")  # a settled order, deep in the list
    drf.delete(expired[5])
    fresh = drf.add(3)
    drf.set_state(fresh[0], "Paid")
    expected = {
        (pending[1], "transition", "Pending", "Expired"),
        (pending[2], "transition", "Pending", "Paid"),
        (pending[3], "transition", "Pending", "Finished"),
        (finished[7], "transition", "Finished", "Refunded"),
        (expired[5], "vanished", "Expired", None),
        (fresh[0], "appeared", None, "Paid"),
        (fresh[1], "appeared", None, "Pending"),
        (fresh[2], "appeared", None, "Pending"),
    }
    ran = run_cli(cfg, "poll", mode, "--format", "ndjson")
    assert events(ran) == expected
    assert f"mode={mode.removeprefix('--')}" in ran.err  # an incremental poll stayed one (cheaper than a sweep)
    assert events(run_cli(cfg, "poll", "--full", "--format", "ndjson")) == set()
    assert events(run_cli(cfg, "poll", "--format", "ndjson")) == set()
    stored = run_cli(cfg, "orders", "--format", "ndjson").ndjson()
    assert sorted(o["order_id"] for o in stored) == sorted(drf.ids())


def test_a_token_drf_refuses_is_a_failure_that_names_the_answer_not_the_token(drf: DrfApi, tmp_path: Path) -> None:
    """DRF's 401 with its ``detail`` makes the poll exit 1 with the server's message, and no token is printed."""
    cfg = config(drf, tmp_path)
    cfg.write_text(cfg.read_text().replace(ACE_TOKEN, "platform-v1-wrong-token-000000"))
    ran = run_cli(cfg, "poll")
    assert ran.code == 1
    assert "401" in ran.err
    assert "Invalid token." in ran.err
    assert "platform-v1-wrong-token-000000" not in ran.out + ran.err

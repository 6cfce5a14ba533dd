"""Issue 5's fault-injection suite: faulty answers, page drift, malformed bodies, 401s, Retry-After, odd data.

The big test runs the simulator for both formats with >= 20% failing answers and heavy page drift over many mixed
full/incremental polls, then one clean full poll, and checks every recorded event against the simulator's own record
of what it changed (``sim.history``): no false event, no missed transition, and a final snapshot equal to the
simulator's orders. Targeted tests use ``Scripted``, a loopback server that answers whatever a test scripts.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import stamina
import stamina.instrumentation

from orderwatch.config import Config, load_config
from orderwatch.core.model import Event
from orderwatch.simulator import Api, Conventions, Faults, SimChange, SimServer, Simulator
from orderwatch.store import EventFilter, Store
from orderwatch.sweep import http
from orderwatch.sweep.poller import Poller, PollResult
from tests.conftest import ACE_TOKEN, LSKY_TOKEN, config_text, run_cli

SOURCE = {"ace": "ace", "lsky": "images"}
KEY = {"ace": "id", "lsky": "trade_no"}
STATE = {"ace": "state", "lsky": "status"}
LSKY_CANONICAL = {"unpaid": "Pending", "paid": "Paid", "cancelled": "Cancelled"}
FAILING = frozenset({"http500", "http502", "http503", "html", "rate_limit", "truncated", "error_body"})
DRIFT = ("drift_insert", "drift_delete")
ROUNDS = 36
MODES: tuple[bool | None, ...] = (True, False, None, False)  # full sweep, incremental, let the poller decide
DATA = Path(__file__).parent / "data"


# ---- harness ----------------------------------------------------------------------------------------------------


@pytest.fixture
def instant_retries() -> Iterator[None]:
    """Retries without back-off (3 attempts per request), restored afterwards."""
    with stamina.set_testing(True, attempts=3):
        yield


@dataclass
class CountingFaults(Faults):
    """The simulator's faults, counting which fault (or none) each request got."""

    picked: Counter[str] = field(default_factory=Counter)

    def pick(self, api: str) -> str | None:
        """The simulator's choice, counted."""
        kind = super().pick(api)
        self.picked[kind or "none"] += 1
        return kind


def write_config(tmp_path: Path, url: str, api: str | None = None, *, defaults: str = "", name: str = "ow") -> Config:
    """A loaded config for the simulated API ``api`` (None: both), ``defaults`` added to ``[defaults]``."""
    path = tmp_path / f"{name}.toml"
    sources = SOURCE[api] if api else "ace,images"
    text = config_text(url, tmp_path / f"{name}.db", sources=sources)
    path.write_text(text.replace('timeout = "5s"\n', 'timeout = "5s"\n' + defaults))
    return load_config(path)


@asynccontextmanager
async def polling(conf: Config) -> AsyncIterator[Poller]:
    """A poller over the config's database and one set of HTTP clients."""
    store = Store.open(conf.database)
    try:
        async with http.clients() as pool:
            yield Poller(store, pool)
    finally:
        store.close()


@dataclass(frozen=True)
class Answer:
    """One scripted HTTP answer; ``length=False`` sends no Content-Length (the body ends when the connection does)."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    length: bool = True


@dataclass(frozen=True)
class Seen:
    """One request the scripted server received."""

    at: float  # time.monotonic() when it arrived
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]


class Scripted:
    """A loopback HTTP server whose answers come from ``route(path, params)``; records every request."""

    def __init__(self, route: Callable[[str, dict[str, list[str]]], Answer]) -> None:
        self.route = route
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait per answer

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                params = parse_qs(parts.query, keep_blank_values=True)
                with outer._lock:
                    outer.seen.append(Seen(time.monotonic(), parts.path, params, dict(self.headers.items())))
                    answer = outer.route(parts.path, params)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                for name, value in answer.headers:
                    self.send_header(name, value)
                if answer.length:
                    self.send_header("Content-Length", str(len(answer.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Scripted:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def ace_body(items: list[Any], count: Any = None) -> bytes:
    """An Ace list answer ``{count, items}`` (integers beyond 64 bits written as they are)."""
    return json.dumps({"count": len(items) if count is None else count, "items": items}, ensure_ascii=False).encode()


def lsky_body(items: list[Any]) -> bytes:
    """A one-page Lsky paginator answer."""
    n = len(items)
    meta = {"current_page": 1, "from": 1 if n else None, "last_page": 1, "per_page": 100, "to": n or None, "total": n}
    links = {"first": "/?page=1", "last": "/?page=1", "prev": None, "next": None}
    data = {"data": items, "links": links, "meta": meta}
    return orjson.dumps({"status": "success", "message": "successful", "data": data, "time": 1})


def body_for(api: str, items: list[Any]) -> bytes:
    """A valid one-page list answer of ``api`` holding ``items``."""
    return ace_body(items) if api == "ace" else lsky_body(items)


def item(api: str, key: str, state: str, **extra: Any) -> dict[str, Any]:
    """A minimal order of ``api``."""
    return {KEY[api]: key, STATE[api]: state, "created_at": "2024-06-15T10:00:00.000000Z", **extra}


# ---- checking events against the simulator's record ---------------------------------------------------------------


def canonical(api: str, raw: str | None) -> str | None:
    """The canonical state of a simulated raw state."""
    if raw is None:
        return None
    return LSKY_CANONICAL[raw] if api == "lsky" else raw


def is_subsequence(claimed: list[str | None], real: list[str | None]) -> bool:
    """True when ``claimed`` appears in ``real`` in order (states an order really had, in the order it had them)."""
    it = iter(real)
    return all(any(state == r for r in it) for state in claimed)


def audit(
    api: str, at_mark: dict[str, str], changes: list[SimChange], events: list[Event], now: dict[str, dict[str, Any]]
) -> list[str]:
    """Every way ``events`` disagree with what the simulator really did after the mark (empty: they agree).

    ``at_mark`` is each order's state when the baseline was taken, ``changes`` the simulator's record since, and
    ``now`` its orders at the end. Each order's events must form one chain (appeared → transitions → vanished) whose
    states the order really had, in that order (false events), and which ends in the order's real final state
    (missed transitions and deletions).
    """
    timeline: dict[str, list[str | None]] = {k: [s] for k, s in at_mark.items()}
    born: set[str] = set()
    for ch in changes:
        if ch.api != api:
            continue
        if ch.kind == "created":
            timeline[ch.key] = [ch.to_state]
            born.add(ch.key)
        else:
            timeline[ch.key].append(ch.to_state)
    problems: list[str] = []
    by_order: dict[str, list[Event]] = {}
    for ev in sorted(events, key=lambda e: e.id or 0):
        by_order.setdefault(ev.order_id, []).append(ev)
        if (ev.from_state, ev.to_state) != (canonical(api, ev.raw_from), canonical(api, ev.raw_to)):
            problems.append(f"{ev.order_id}: canonical states {ev.from_state}→{ev.to_state} do not match raw ones")
    for key, real in timeline.items():
        claimed: list[str | None] = [None if key in born else real[0]]
        for ev in by_order.get(key, []):
            expected_from = None if ev.kind == "appeared" else claimed[-1]
            if claimed[-1] != expected_from or ev.raw_from != claimed[-1]:
                problems.append(f"{key}: {ev.kind} {ev.raw_from}→{ev.raw_to} does not follow {claimed[-1]}")
            if ev.kind == "transition" and ev.raw_from == ev.raw_to:
                problems.append(f"{key}: transition to the same state {ev.raw_to}")
            if (ev.kind == "vanished") != (ev.raw_to is None):
                problems.append(f"{key}: {ev.kind} with raw_to {ev.raw_to}")
            claimed.append(ev.raw_to)
        start = 1 if key in born else 0
        if not is_subsequence(claimed[start:], real):
            problems.append(f"{key}: events claim {claimed} but the order really went {real}")
        if claimed[-1] != real[-1]:
            problems.append(f"{key}: events end at {claimed[-1]} but the order is {real[-1]} (missed)")
        in_sim = now.get(key)
        if (in_sim[STATE[api]] if in_sim else None) != real[-1]:
            problems.append(f"{key}: the simulator's record disagrees with its state")  # the audit itself is wrong
    problems += [f"{key}: events for an order the simulator never had" for key in by_order.keys() - timeline.keys()]
    return problems


# ---- the fault-injection suite ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("api", "switches"),
    [("ace", ()), ("lsky", ()), ("lsky", ("lsky_paginator=simple", "lsky_detail=none"))],
    ids=["ace", "lsky", "lsky-uncounted"],
)
async def test_faulty_drifting_polls_make_no_false_event_and_miss_no_transition(
    tmp_path: Path, api: Api, switches: tuple[str, ...]
) -> None:
    """Faulty, drifting mixed polls then a clean one: no false event, no missed change, snapshot = simulator; also
    on a list without counts or detail endpoint, where only a look by search or a second sweep proves a row gone."""
    sim = Simulator(
        seed=23, ace_token=ACE_TOKEN, lsky_token=LSKY_TOKEN, max_page_size=7,
        conventions=Conventions().with_switches(switches),
    )  # fmt: skip
    faults = CountingFaults(rng=random.Random(99), slow_seconds=0.01)
    sim.faults = faults
    (sim.add_ace if api == "ace" else sim.add_lsky)(30)
    sim.step(30)
    rng = random.Random(7)
    name = SOURCE[api]
    with SimServer(sim) as server, stamina.set_testing(True, attempts=3):
        conf = write_config(tmp_path, server.url, api)
        src = conf.sources[name]
        async with polling(conf) as poller:
            first = await poller.poll(src, full=True)
            assert first.baseline and first.ok, first.error
            mark = len(sim.history)
            at_mark = {o[KEY[api]]: o[STATE[api]] for o in sim.orders(api)}

            faults.kinds, faults.rate = {*FAILING, "slow", *DRIFT}, 0.5
            results: list[PollResult] = []
            for i in range(ROUNDS):
                sim.step(rng.randint(1, 8))
                sim.inject(api, "slow", rng.randint(0, 3))  # so the drift below lands on a later page
                sim.inject(api, rng.choice(DRIFT))
                results.append(await poller.poll(src, full=MODES[i % len(MODES)]))
            picked = Counter(faults.picked)

            faults.rate = 0.0
            with sim.lock:
                faults.queue[api].clear()
            clean = await poller.poll(src, full=True)
            settled = await poller.poll(src, full=True)
            events = poller.store.events(EventFilter(source=name))
            stored = {r.key: (r.raw_state, orjson.loads(r.raw)) for r in poller.store.orders(name)}

    answers = sum(picked.values())
    assert sum(picked[k] for k in FAILING) / answers >= 0.2, picked
    assert sum(picked[k] for k in DRIFT) >= ROUNDS, picked
    assert any(not r.ok for r in results), "the faults never made a poll fail"
    assert sum(r.ok for r in results) >= ROUNDS // 4, [r.error for r in results]
    assert clean.ok and clean.consistent, clean.error
    assert settled.ok and settled.events == (), "a clean poll after the clean poll still found changes"

    now = {o[KEY[api]]: o for o in sim.orders(api)}
    assert audit(api, at_mark, sim.history[mark:], events, now) == []
    assert stored == {k: (o[STATE[api]], o) for k, o in now.items()}
    kinds = Counter(e.kind for e in events)
    assert kinds["transition"] >= 10 and kinds["appeared"] >= 10, kinds
    if api == "lsky":
        assert kinds["vanished"] >= 1, kinds  # deleted cancelled orders were reported
    assert sum(e.kind == "appeared" for e in events) == len({e.order_id for e in events if e.kind == "appeared"})


@pytest.mark.anyio
@pytest.mark.parametrize("search", ["substring", "ignored"])
async def test_a_row_pulled_past_a_page_of_a_list_without_counts_is_not_reported_vanished(
    tmp_path: Path, search: str
) -> None:
    """A list without counts (Laravel's simplePaginate) and no detail endpoint proves absence by its end alone: an
    order deleted from the first page while the second is asked pulls a row past the page unseen; a search by its
    trade number (or, where the search is ignored, a second look at the list) finds it, so nothing still listed is
    reported vanished, and the next poll reports the deletion, once."""
    sim = Simulator(
        seed=4, ace_token=ACE_TOKEN, lsky_token=LSKY_TOKEN, max_page_size=10,
        conventions=Conventions().with_switches(["lsky_paginator=simple", "lsky_detail=none", f"lsky_search={search}"]),
    )  # fmt: skip
    sim.add_lsky(45, status="cancelled")
    newest_first = [o["trade_no"] for o in sorted(sim.orders("lsky"), key=lambda o: o["trade_no"], reverse=True)]
    with SimServer(sim) as server, stamina.set_testing(True, attempts=3):
        conf = write_config(tmp_path, server.url, "lsky")
        src = conf.sources["images"]
        async with polling(conf) as poller:
            assert (await poller.poll(src, full=True)).baseline
            with sim.lock:
                sim.faults.queue["lsky"].extend([None, "drift_delete"])  # type: ignore[list-item]  # page 2 deletes
            skipped = await poller.poll(src, full=True)
            deleted = next(k for k in newest_first if k not in {o["trade_no"] for o in sim.orders("lsky")})
            settled = await poller.poll(src, full=True)
            events = poller.store.events(EventFilter(source="images"))
    assert deleted == newest_first[0]  # listed on the first page before it went, so that page 2 skipped a row
    assert skipped.ok and skipped.events == () and not skipped.consistent, skipped
    assert [(e.order_id, e.kind) for e in events] == [(deleted, "vanished")]
    assert settled.ok and settled.consistent and len(settled.events) == 1


def test_audit_flags_false_and_missed_events() -> None:
    """The audit itself catches a false transition, a false vanish, a duplicate appearance and a missed change."""
    changes = [
        SimChange("lsky", "a", "state", "unpaid", "paid", 1),
        SimChange("lsky", "n", "created", None, "unpaid", 2),
        SimChange("lsky", "b", "state", "unpaid", "cancelled", 3),
    ]
    now = {k: {"trade_no": k, "status": s} for k, s in (("a", "paid"), ("b", "cancelled"), ("c", "unpaid"))}
    now["n"] = {"trade_no": "n", "status": "unpaid"}
    at_mark = {"a": "unpaid", "b": "unpaid", "c": "unpaid"}

    def ev(i: int, key: str, kind: Any, raw_from: str | None, raw_to: str | None) -> Event:
        return Event(
            "images", key, kind, canonical("lsky", raw_from), canonical("lsky", raw_to), raw_from, raw_to, "t", None, i
        )

    good = [ev(1, "a", "transition", "unpaid", "paid"), ev(2, "n", "appeared", None, "unpaid")]
    good.append(ev(3, "b", "transition", "unpaid", "cancelled"))
    assert audit("lsky", at_mark, changes, good, now) == []
    assert audit("lsky", at_mark, changes, good[:2], now) != []  # b's cancellation missed
    assert audit("lsky", at_mark, changes, [*good, ev(4, "c", "transition", "unpaid", "paid")], now) != []
    assert audit("lsky", at_mark, changes, [*good, ev(4, "c", "vanished", "unpaid", None)], now) != []
    assert audit("lsky", at_mark, changes, [*good, ev(4, "n", "appeared", None, "unpaid")], now) != []


# ---- malformed answers ------------------------------------------------------------------------------------------

HTML = b"<!DOCTYPE html><html><head><title>Server Error</title></head><body>500 | Server Error</body></html>"
MALFORMED: list[tuple[str, str, Answer, str]] = [
    ("ace", "html-200", Answer(HTML, content_type="text/html"), "answer is HTML, not JSON"),
    ("ace", "truncated", Answer(ace_body([item("ace", "a", "Paid")])[:30]), "answer is not valid JSON"),
    ("ace", "empty", Answer(b""), "empty answer where JSON was expected"),
    ("ace", "array", Answer(b"[]"), "answer is a JSON list, expected an object"),
    ("ace", "no-list-key", Answer(b'{"count": 2}'), "answer has no 'items' or 'results' list"),
    ("ace", "items-object", Answer(b'{"count": 1, "items": {"id": "a"}}'), "'items' is a dict, expected a list"),
    ("ace", "item-string", Answer(ace_body(["a"])), "item 0 is a str, expected an object"),
    ("ace", "item-no-key", Answer(ace_body([{"state": "Paid"}])), "item 0 has no usable 'id'"),
    ("ace", "item-no-state", Answer(ace_body([{"id": "a", "state": None}])), "(order a) has no usable 'state'"),
    (
        "ace",
        "error-200",
        Answer(b'{"error": {"code": "internal", "message": "boom"}, "trace_id": "t"}'),
        "the API answered with an error: internal: boom",
    ),
    ("lsky", "html-200", Answer(HTML, content_type="text/html"), "answer is HTML, not JSON"),
    ("lsky", "truncated", Answer(lsky_body([item("lsky", "a", "paid")])[:40]), "answer is not valid JSON"),
    (
        "lsky",
        "status-error-200",
        Answer(orjson.dumps({"status": "error", "message": "服务异常", "data": {}, "time": 1})),
        "the API answered status 'error': 服务异常",
    ),
    ("lsky", "message-200", Answer(b'{"message": "Unauthenticated."}'), "the API answered with an error"),
    ("lsky", "no-data", Answer(b'{"status": "success"}'), "answer has no 'data' object"),
    (
        "lsky",
        "data-data-null",
        Answer(b'{"status": "success", "data": {"data": null}}'),
        "'data.data' is a NoneType, expected a list",
    ),
    ("lsky", "item-no-key", Answer(lsky_body([{"status": "paid"}])), "item 0 has no usable 'trade_no'"),
    ("lsky", "item-no-state", Answer(lsky_body([{"trade_no": "a"}])), "(order a) has no usable 'status'"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("api", "case", "answer", "reason"), MALFORMED, ids=[f"{m[0]}-{m[1]}" for m in MALFORMED])
async def test_malformed_answer_is_an_error_with_a_reason_and_no_event(
    tmp_path: Path, instant_retries: None, api: str, case: str, answer: Answer, reason: str
) -> None:
    """A malformed list answer fails the poll with a reason and no event; the next good answer's change comes once."""
    states = ("Pending", "Paid") if api == "ace" else ("unpaid", "paid")
    good = Answer(body_for(api, [item(api, "a", states[0]), item(api, "b", states[0])]))
    with Scripted(lambda path, params: good) as server:
        conf = write_config(tmp_path, server.url, api)
        src = conf.sources[SOURCE[api]]
        async with polling(conf) as poller:
            assert (await poller.poll(src, full=True)).baseline
            server.route = lambda path, params: answer
            for full in (True, False):
                bad = await poller.poll(src, full=full)
                assert not bad.ok and bad.events == ()
                assert reason in (bad.error or ""), bad.error
            assert poller.store.events() == []
            assert set(poller.store.snapshot(src.name)) == {"a", "b"}
            changed = Answer(body_for(api, [item(api, "a", states[1]), item(api, "b", states[0])]))
            server.route = lambda path, params: changed
            healed = await poller.poll(src, full=True)
    assert healed.ok, healed.error
    assert [(e.order_id, e.kind, e.raw_from, e.raw_to) for e in healed.events] == [
        ("a", "transition", states[0], states[1])
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["ace", "lsky"])
async def test_simulated_garbage_exhausting_retries_fails_the_poll_without_events(
    tmp_path: Path, sim: Simulator, server: SimServer, instant_retries: None, api: Api
) -> None:
    """Simulated garbage past the retries fails the poll with a reason and no event; one bad answer is retried away."""
    conf = write_config(tmp_path, server.url, api)
    src = conf.sources[SOURCE[api]]
    async with polling(conf) as poller:
        assert (await poller.poll(src, full=True)).baseline
        for kind, reason in (("html", "HTTP 502"), ("truncated", "not valid JSON"), ("error_body", "error")):
            sim.inject(api, kind, 3)
            result = await poller.poll(src, full=True)
            assert not result.ok and result.events == ()
            assert reason in (result.error or ""), (kind, result.error)
        for kind in ("html", "truncated", "error_body", "http503", "rate_limit"):
            sim.inject(api, kind)
            once = await poller.poll(src, full=True)
            assert once.ok and once.events == (), (kind, once.error)
        assert poller.store.events() == []


@pytest.mark.anyio
async def test_a_failing_later_page_reports_nothing_vanished(tmp_path: Path, instant_retries: None) -> None:
    """When page 2 of a sweep is garbage, its orders are not reported vanished; the error names the page."""
    orders = [item("ace", f"o{i}", "Pending") for i in range(4)]
    broken = {"on": False}

    def route(path: str, params: dict[str, list[str]]) -> Answer:
        offset = int(params.get("offset", ["0"])[0])
        if broken["on"] and offset >= 2:
            return Answer(b"<html>oops</html>", content_type="text/html")
        return Answer(ace_body(orders[offset : offset + 2], count=len(orders)))

    with Scripted(route) as server:
        conf = write_config(tmp_path, server.url, "ace", defaults="page_size = 2\n")
        src = conf.sources["ace"]
        async with polling(conf) as poller:
            assert (await poller.poll(src, full=True)).baseline
            broken["on"] = True
            partial = await poller.poll(src, full=True)
            assert not partial.ok and not partial.complete
            assert "page at 2 failed: answer is HTML" in (partial.error or ""), partial.error
            assert partial.events == ()
            assert set(poller.store.snapshot("ace")) == {"o0", "o1", "o2", "o3"}


@pytest.mark.anyio
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "close-delimited"])
async def test_oversize_answer_hits_max_response_bytes(tmp_path: Path, instant_retries: None, declared: bool) -> None:
    """An answer larger than max_response_bytes (declared or streamed) fails the poll, names the cap, is not retried."""
    huge = Answer(ace_body([item("ace", f"o{i}", "Paid", pad="x" * 200) for i in range(40)]), length=declared)
    with Scripted(lambda path, params: huge) as server:
        conf = write_config(tmp_path, server.url, "ace", defaults='max_response_bytes = "4KiB"\n')
        async with polling(conf) as poller:
            result = await poller.poll(conf.sources["ace"], full=True)
        assert not result.ok and result.events == ()
        assert "exceeds max_response_bytes (4096)" in (result.error or ""), result.error
        assert len(server.seen) == 1


@pytest.mark.anyio
async def test_max_pages_stops_the_sweep_without_inferring_absence(
    tmp_path: Path, sim: Simulator, server: SimServer, instant_retries: None
) -> None:
    """A sweep cut short by max_pages is an error that says which key to raise, and reports nothing vanished."""
    sim.add_ace(30)
    conf = write_config(tmp_path, server.url, "ace")
    src = conf.sources["ace"]
    async with polling(conf) as poller:
        assert (await poller.poll(src, full=True)).baseline
        sim.add_ace(2)
        capped = await poller.poll(dataclasses.replace(src, max_pages=2), full=True)
        stored = poller.store.snapshot("ace")
    assert not capped.ok and not capped.complete
    assert "stopped after max_pages (2) pages; raise sources.ace.max_pages" in (capped.error or "")
    assert {e.kind for e in capped.events} <= {"appeared"}
    assert len(stored) == len(sim.orders("ace"))


# ---- authentication ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["ace", "lsky"])
async def test_rejected_token_is_not_retried_and_says_what_to_fix(
    tmp_path: Path, sim: Simulator, server: SimServer, instant_retries: None, api: Api
) -> None:
    """A 401 fails the poll after one request (no retry storm), flags auth, and names the key to fix."""
    conf = write_config(tmp_path, server.url, api)
    src = conf.sources[SOURCE[api]]
    async with polling(conf) as poller:
        assert (await poller.poll(src, full=True)).baseline
        sim.revoke(api)
        sim.reset_stats()
        result = await poller.poll(src, full=True)
        assert sim.requests(api) == 1
        assert result.auth_failed and not result.ok and result.events == ()
        assert "token rejected (401" in (result.error or "")
        assert f"check sources.{src.name}.token" in (result.error or "")
        sim.restore(api)
        sim.inject(api, "auth")  # one 401 among good answers: still not retried
        sim.reset_stats()
        once = await poller.poll(src, full=True)
        assert once.auth_failed and sim.requests(api) == 1
        assert (await poller.poll(src, full=True)).ok


def test_cli_rejected_token_exits_1_with_the_fix(config_file: Path, sim: Simulator) -> None:
    """`orderwatch poll` with a revoked token exits 1 after one request to that source and says which key to fix."""
    assert run_cli(config_file, "poll").code == 0
    sim.revoke("ace")
    sim.reset_stats()
    ran = run_cli(config_file, "poll", "--format", "ndjson")
    assert ran.code == 1
    assert ran.ndjson() == []
    assert sim.requests("ace") == 1
    assert 'orderwatch: ace: source "ace": token rejected (401' in ran.err
    assert "check sources.ace.token" in ran.err


# ---- Retry-After ---------------------------------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Retry-After as delta-seconds or an HTTP date becomes seconds to wait; a past date is 0, junk is ignored."""
    assert http.retry_after("7") == 7.0
    assert http.retry_after(" 0 ") == 0.0
    ahead = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    wait = http.retry_after(ahead)
    assert wait is not None and 100 < wait <= 120
    assert http.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert http.retry_after("soon") is None
    assert http.retry_after(None) is None


@dataclass
class RetryLog:
    """A stamina on-retry hook that remembers every scheduled wait."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, details: stamina.instrumentation.RetryDetails) -> None:
        self.waits.append(details.wait_for)


@pytest.fixture
def retry_log() -> Iterator[RetryLog]:
    """Record stamina's scheduled waits (real back-off, not test mode); restore the hooks afterwards."""
    before = stamina.instrumentation.get_on_retry_hooks()
    hook = RetryLog()
    stamina.instrumentation.set_on_retry_hooks([hook])
    try:
        yield hook
    finally:
        stamina.instrumentation.set_on_retry_hooks(before)


@pytest.mark.anyio
async def test_simulated_429_waits_the_retry_after_seconds(
    tmp_path: Path, sim: Simulator, server: SimServer, retry_log: RetryLog
) -> None:
    """A 429 with ``Retry-After: 1`` is retried after exactly the announced second (real wait), then succeeds."""
    conf = write_config(tmp_path, server.url, "ace")
    sim.inject("ace", "rate_limit")
    async with polling(conf) as poller:
        result = await poller.poll(conf.sources["ace"], full=True)
    assert result.ok and result.baseline, result.error
    assert retry_log.waits == [1.0]


@pytest.mark.anyio
async def test_retry_after_http_date_is_honoured(tmp_path: Path, retry_log: RetryLog) -> None:
    """A 503 whose Retry-After is an HTTP date about 2 s ahead: the retry comes no sooner than that date."""
    good = Answer(ace_body([item("ace", "a", "Paid")]))
    answers: list[Answer] = []

    def route(path: str, params: dict[str, list[str]]) -> Answer:
        if not answers:
            when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
            answers.append(Answer(b'{"detail": "maintenance"}', status=503, headers=(("Retry-After", when),)))
            return answers[0]
        return good

    with Scripted(route) as server:
        conf = write_config(tmp_path, server.url, "ace")
        async with polling(conf) as poller:
            result = await poller.poll(conf.sources["ace"], full=True)
        assert result.ok, result.error
        assert len(retry_log.waits) == 1 and 0.5 < retry_log.waits[0] <= 2.0, retry_log.waits
        first, retry = server.seen[:2]
        assert retry.at - first.at >= retry_log.waits[0]


@pytest.mark.anyio
async def test_retry_after_beyond_the_budget_is_cut_to_the_budget(tmp_path: Path, retry_log: RetryLog) -> None:
    """A Retry-After of an hour never makes a poll wait past its retry_budget: it fails with the 429's reason."""
    limited = Answer(b'{"detail": "slow down"}', status=429, headers=(("Retry-After", "3600"),))
    with Scripted(lambda path, params: limited) as server:
        conf = write_config(tmp_path, server.url, "ace", defaults='retry_budget = "300ms"\n')
        async with polling(conf) as poller:
            result = await poller.poll(conf.sources["ace"], full=True)
    assert not result.ok
    assert "HTTP 429 (the server is rate limiting): slow down" in (result.error or ""), result.error
    assert retry_log.waits and all(w <= 0.3 for w in retry_log.waits), retry_log.waits


# ---- data oddities -------------------------------------------------------------------------------------------------

ODD_ACE: list[dict[str, Any]] = [
    item("ace", "odd-unknown", "Disputed", price=9.99),
    {"id": 12345, "state": "Paid", "price": "49.99", "amount": "500", "created_at": "2024-06-15T10:00:01Z"},
    item("ace", "odd-nulls", "Pending", price=None, pay_way=None, tags=None, metadata=None, applications=None),
    item("ace", "odd-ユニコード-🚀", "finished", pay_way="微信支付", metadata={"备注": "加急 ✓", "emoji": "🧾"}),
]


def odd_route(ace: list[dict[str, Any]], lsky: list[dict[str, Any]]) -> Callable[[str, dict[str, list[str]]], Answer]:
    """Serve ``ace`` at the Ace list path (count as a string) and ``lsky`` at the Lsky one."""

    def route(path: str, params: dict[str, list[str]]) -> Answer:
        if path.startswith("/api/v1/"):
            return Answer(ace_body(ace, count=str(len(ace))))
        return Answer(lsky_body(lsky))

    return route


def test_odd_data_is_stored_and_shown(tmp_path: Path) -> None:
    """Unknown states, contradictions, unicode, numeric strings and nulls are stored, shown, and change normally."""
    seed = orjson.loads((DATA / "lsky_seed_page.json").read_bytes())["data"]["data"]
    lsky = [*seed, item("lsky", "odd-退款中", "refunding", product={"name": "月卡 🚀", "price": "9.90"}, amount=None)]
    with Scripted(odd_route(ODD_ACE, lsky)) as server:
        cfg = tmp_path / "odd.toml"
        cfg.write_text(config_text(server.url, tmp_path / "odd.db"))
        base = run_cli(cfg, "poll")
        assert base.code == 0, base.err
        assert "Traceback" not in base.err
        assert "unknown state kept as is" in base.err
        shown = run_cli(cfg, "orders", "--format", "json")
        assert shown.code == 0, shown.err
        rows = {(r["source"], r["order_id"]): r for r in orjson.loads(shown.out)}
        assert len(rows) == len(ODD_ACE) + len(lsky)
        assert (rows["ace", "odd-unknown"]["state"], rows["ace", "odd-unknown"]["raw_state"]) == (
            "Disputed",
            "Disputed",
        )
        assert rows["ace", "12345"]["order"]["price"] == "49.99"
        assert rows["ace", "odd-nulls"]["order"]["price"] is None
        assert rows["ace", "odd-ユニコード-🚀"]["state"] == "Finished"
        assert rows["ace", "odd-ユニコード-🚀"]["order"]["metadata"] == {"备注": "加急 ✓", "emoji": "🧾"}
        contradictory = rows["images", "2024101513033419533_002"]
        assert contradictory["state"] == "Paid"
        assert (contradictory["order"]["paid_at"], contradictory["order"]["canceled_at"]) == (
            None,
            "2024-10-15T09:15:15.000000Z",
        )
        assert rows["images", "odd-退款中"]["order"]["product"]["name"] == "月卡 🚀"
        table = run_cli(cfg, "orders", "--format", "table")
        assert table.code == 0 and "Disputed" in table.out, table.err

        later_ace = [dict(o) for o in ODD_ACE]
        later_ace[0]["state"], later_ace[2]["state"] = "Refunded", "Paid"
        later_lsky = [dict(o) for o in lsky]
        later_lsky[-1]["status"] = "paid"
        server.route = odd_route(later_ace, later_lsky)
        ran = run_cli(cfg, "poll", "--full", "--format", "json")
        assert ran.code == 0, ran.err
        got = {(e["order_id"], e["from_state"], e["to_state"]) for e in orjson.loads(ran.out)}
        assert got == {
            ("odd-unknown", "Disputed", "Refunded"),
            ("odd-nulls", "Pending", "Paid"),
            ("odd-退款中", "refunding", "Paid"),
        }
        changes = run_cli(cfg, "changes", "--format", "table")
        assert changes.code == 0 and "refunding" in changes.out, changes.err


@pytest.mark.anyio
async def test_integers_beyond_64_bits_are_kept_exact(tmp_path: Path, instant_retries: None) -> None:
    """An order whose id (or amount) is an integer beyond 64 bits is stored with that exact integer, not a float."""
    big = 123456789012345678901234567890
    answer = Answer(ace_body([{"id": big, "state": "Pending", "amount": big + 1}, item("ace", "a", "Paid")]))
    with Scripted(lambda path, params: answer) as server:
        conf = write_config(tmp_path, server.url, "ace")
        async with polling(conf) as poller:
            result = await poller.poll(conf.sources["ace"], full=True)
            rows = {r.key: r.raw for r in poller.store.orders("ace")}
    assert result.ok, result.error
    assert set(rows) == {str(big), "a"}
    assert json.loads(rows[str(big)])["amount"] == big + 1

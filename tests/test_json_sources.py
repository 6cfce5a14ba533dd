"""Generic JSON sources end to end over real HTTP: ``kind = "json"`` by preset and by a fully generic config of
each paging style, against the shop simulator. Every net change between two polls is reported exactly once, a sweep
with a failing page reports nothing vanished, faults are retried, and ``check --connect`` names a wrong path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orderwatch.config import Config, load_config
from orderwatch.core import render
from orderwatch.delivery.deliverer import details_for
from orderwatch.simulator import SimServer
from orderwatch.simulator.shops import SHOP_APIS, GenericOptions, ShopSimulator
from orderwatch.simulator.state import Faults, SimChange
from orderwatch.sources import PRESETS, Source
from orderwatch.sweep.poller import Outcome, Poller, PollResult
from tests.test_faults import instant_retries, polling  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio

PRESET_NAMES = ("woocommerce", "shopify", "stripe-payment-intents", "paddle-transactions")
Net = tuple[str, str, str | None, str | None]  # (order, kind, raw_from, raw_to)


async def test_every_preset_is_tested_against_a_simulator_mode_of_its_api() -> None:
    """A preset added to the table must be added here too, and the simulator must speak its API."""
    assert set(PRESETS) == set(PRESET_NAMES) <= set(SHOP_APIS)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (strings, numbers, booleans, flat tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def source_toml(name: str, keys: dict[str, Any]) -> str:
    """A ``[sources.NAME]`` table with its ``paging`` and ``filters`` sub-tables."""
    lines = [f"[sources.{name}]"]
    subs = {k: v for k, v in keys.items() if k in ("paging", "filters")}
    lines += [f"{k} = {toml_value(v)}" for k, v in keys.items() if k not in subs and v is not None]
    for sub, table in subs.items():
        lines.append(f"[sources.{name}.{sub}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_config(tmp_path: Path, name: str, keys: dict[str, Any], *, page_size: int = 4) -> Config:
    """A loaded config with one json source ``name`` (``keys``), small pages and short timeouts."""
    text = (
        f'database = "{tmp_path / "ow.db"}"\n'
        f'[defaults]\npage_size = {page_size}\ntimeout = "5s"\nretry_budget = "20s"\njitter = "0s"\n'
        + source_toml(name, keys)
    )
    path = tmp_path / "ow.toml"
    path.write_text(text)
    return load_config(path)


def preset_keys(preset: str, sim: ShopSimulator, url: str) -> dict[str, Any]:
    """The few keys a user writes for a preset: kind, preset, base_url and token."""
    return {"kind": "json", "preset": preset, "base_url": url, "token": sim.token}


def net_changes(changes: list[SimChange], canonical: dict[str, str]) -> set[Net]:
    """The events the simulator's changes must produce: one per order whose canonical state changed, that
    appeared or that was deleted."""
    first: dict[str, str | None] = {}
    last: dict[str, str | None] = {}
    for ch in changes:
        first.setdefault(ch.key, None if ch.kind == "created" else ch.from_state)
        last[ch.key] = None if ch.kind == "deleted" else ch.to_state
    out: set[Net] = set()
    for key, before in first.items():
        after = last[key]
        if before is None and after is not None:
            out.add((key, "appeared", None, after))
        elif before is not None and after is None:
            out.add((key, "vanished", before, None))
        elif before is not None and after is not None and canonical.get(before, before) != canonical.get(after, after):
            out.add((key, "transition", before, after))
    return out


def got(result: PollResult) -> set[Net]:
    """A poll's events as (order, kind, raw_from, raw_to)."""
    return {(e.order_id, e.kind, e.raw_from, e.raw_to) for e in result.events}


async def change_and_poll(sim: ShopSimulator, poller: Poller, conf: Config, name: str, steps: int) -> None:
    """Make ``steps`` random changes, poll, and check the poll reported exactly the net changes; the next poll
    reports nothing."""
    src = conf.sources[name]
    start = len(sim.history)
    sim.step(steps)
    result = await poller.poll(src)
    assert result.ok, result.error
    expected = net_changes(sim.history[start:], dict(src.states))
    assert got(result) == expected
    again = await poller.poll(src)
    assert again.ok and again.events == ()


@pytest.mark.parametrize("preset", PRESET_NAMES)
async def test_each_preset_reports_every_net_change_once(tmp_path: Path, preset: str) -> None:
    """Against each preset's API: a silent baseline of every order, then each round of random changes (creations,
    moves, deletions the API allows) is reported exactly once by the next poll, and the poll after it is silent."""
    sim = ShopSimulator(preset, seed=7)  # type: ignore[arg-type]
    sim.create(9)
    sim.step(20)
    with SimServer(sim) as server:
        conf = write_config(tmp_path, "shop", preset_keys(preset, sim, server.url))
        async with polling(conf) as poller:
            first = await poller.poll(conf.sources["shop"])
            assert first.ok and first.baseline and first.events == (), first.error
            assert first.orders == len(sim.order_keys())
            for _ in range(3):
                await change_and_poll(sim, poller, conf, "shop", 12)
            assert {o.key for o in poller.store.orders("shop")} == set(sim.order_keys())


@dataclass
class FailAfter(Faults):
    """The simulator's faults, except that every request after the first ``answered`` ones is a 503."""

    answered: int = 1

    def pick(self, api: str) -> str | None:
        """None for the first ``answered`` requests, then ``http503``."""
        self.answered -= 1
        return None if self.answered >= 0 else "http503"


GENERIC: dict[str, dict[str, Any]] = {
    "offset": {"paging": "offset", "total": "meta.total"},
    "offset-bare": {"paging": "offset", "items": ""},
    "page": {"paging": "page", "total": "header:X-Total-Count"},
    "page-no-total": {"paging": "page", "has_more": "has_more"},
    "cursor-last-key": {"paging": "cursor", "cursor": "last_key", "has_more": "has_more"},
    "cursor-token": {"paging": "cursor", "cursor": "next_cursor"},
    "link": {"paging": "link"},
    "none": {"paging": "none"},
    "nested-paths": {
        "paging": "cursor",
        "cursor": "paging.next",
        "cursor_param": "after",
        "size_param": "limit",
        "items": "result.orders",
        "key": "ref.id",
        "state": "lifecycle.state",
        "created": "times.created",
        "updated": "times.updated",
        "auth": "header:X-Api-Key",
        "key_style": "prefixed",
    },
    "query-auth-unix-times": {"paging": "offset", "auth": "query:api_key", "time_format": "unix", "total": "count"},
}


@dataclass
class Counting(Faults):
    """The simulator's faults, counting those served."""

    served: int = 0

    def pick(self, api: str) -> str | None:
        """The simulator's choice, counted when it is a fault."""
        kind = super().pick(api)
        self.served += kind is not None
        return kind


def generic_keys(options: GenericOptions, url: str, token: str) -> dict[str, Any]:
    """A fully generic config (no preset) describing the simulated API ``options``."""
    paging: dict[str, Any] = {
        "style": options.paging,
        "size_param": options.size_param if options.paging != "none" else None,
        "page_param": options.page_param,
        "offset_param": options.offset_param,
        "cursor_param": options.cursor_param,
        "cursor": options.cursor,
        "first_page": options.first_page,
        "has_more": options.has_more,
        "total": options.total,
        "max_size": options.max_size,
    }
    return {
        "kind": "json",
        "base_url": url,
        "token": token,
        "auth": options.auth,
        "path": options.path,
        "detail_path": options.detail_path,
        "items": options.items,
        "key": options.key,
        "state": options.state,
        "created": options.created,
        "updated": options.updated,
        "states": {"pending": "Pending", "paid": "Paid", "shipped": "Paid", "delivered": "Finished"},
        "paging": paging,
    }


def generic_options(name: str) -> GenericOptions:
    """The simulated API of one ``GENERIC`` case."""
    case = dict(GENERIC[name])
    if case.get("paging") == "none":
        case.update(default_size=100, max_size=100)
    return GenericOptions(**case)


@pytest.mark.parametrize("case", sorted(GENERIC))
async def test_a_generic_config_of_each_paging_style_reports_every_net_change_once(tmp_path: Path, case: str) -> None:
    """A fully generic config (paths, paging, totals written by hand) of each paging style: silent baseline, then
    every round of random changes is reported exactly once and the next poll is silent."""
    options = generic_options(case)
    sim = ShopSimulator("generic", seed=3, options=options)
    sim.create(11)
    sim.step(15)
    with SimServer(sim) as server:
        conf = write_config(tmp_path, "api", generic_keys(options, server.url, sim.token), page_size=4)
        async with polling(conf) as poller:
            first = await poller.poll(conf.sources["api"])
            assert first.ok and first.baseline and first.events == (), first.error
            assert first.orders == len(sim.order_keys())
            for _ in range(3):
                await change_and_poll(sim, poller, conf, "api", 10)


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("preset", PRESET_NAMES)
async def test_a_failing_later_page_reports_nothing_vanished_and_a_fault_is_retried(
    tmp_path: Path, preset: str
) -> None:
    """When a later page keeps failing, the poll is partial and reports nothing vanished (orders it did not see
    are kept); a single 503 is retried and the poll completes with the right events."""
    sim = ShopSimulator(preset, seed=11)  # type: ignore[arg-type]
    keys = sim.create(14)
    with SimServer(sim) as server:
        conf = write_config(tmp_path, "shop", preset_keys(preset, sim, server.url))
        src = conf.sources["shop"]
        async with polling(conf) as poller:
            assert (await poller.poll(src)).baseline
            stored = len(poller.store.orders("shop"))
            sim.create(1)
            sim.faults = FailAfter(rng=sim.faults.rng, queue=sim.faults.queue, answered=1)
            partial = await poller.poll(src)
            sim.faults = Faults(rng=sim.faults.rng, queue=sim.faults.queue)
            assert partial.outcome is Outcome.PARTIAL and "failed" in (partial.error or ""), partial.error
            assert all(e.kind != "vanished" for e in partial.events)
            assert len(poller.store.orders("shop")) >= stored
            sim.inject("http503", 1)
            done = await poller.poll(src)
            assert done.ok, done.error
            assert all(e.kind != "vanished" for e in done.events)
            assert {e.order_id for e in done.events if e.kind == "appeared"} <= set(sim.order_keys()) - set(keys)
            assert not (await poller.poll(src)).events


@pytest.mark.parametrize("preset", PRESET_NAMES)
async def test_the_default_notice_of_each_preset_shows_amount_currency_customer_and_payment(
    tmp_path: Path, preset: str
) -> None:
    """A new order's default notice, rendered with its source's adapter lines, has the amount with its currency,
    the customer and the payment method as the preset's API writes them."""
    sim = ShopSimulator(preset, seed=5)  # type: ignore[arg-type]
    sim.create(2)
    with SimServer(sim) as server:
        conf = write_config(tmp_path, "shop", preset_keys(preset, sim, server.url))
        async with polling(conf) as poller:
            assert (await poller.poll(conf.sources["shop"])).baseline
            key = sim.create(1)[0]
            result = await poller.poll(conf.sources["shop"])
    (event,) = result.events
    assert event.order_id == key
    body = render.render_event(event, title=None, body=None, details=details_for(conf.sources)(event, event.order()))
    lines = dict(line.split(": ", 1) for line in body.body.splitlines())
    currency = {"woocommerce": "EUR", "stripe-payment-intents": "USD"}.get(preset, "USD")
    assert lines["Amount"].endswith(f" {currency}") and lines["Amount"][0].isdigit(), body.body
    order = event.order()
    has_customer = preset != "stripe-payment-intents" or order.get("customer") or order.get("receipt_email")
    assert ("Customer" in lines) == bool(has_customer) and lines["Payment"], body.body


@asynccontextmanager
async def baselined(
    tmp_path: Path, case: str, *, seed: int, orders: int
) -> AsyncIterator[tuple[ShopSimulator, Poller, Source]]:
    """The simulated generic API of ``case`` with ``orders`` orders, on loopback, and a poller that has taken the
    baseline of a generic config describing it."""
    options = generic_options(case)
    sim = ShopSimulator("generic", seed=seed, options=options)
    sim.create(orders)
    with SimServer(sim) as server:
        conf = write_config(tmp_path, "api", generic_keys(options, server.url, sim.token), page_size=4)
        src = conf.sources["api"]
        async with polling(conf) as poller:
            assert (await poller.poll(src)).baseline
            yield sim, poller, src


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("case", ["offset", "page-no-total", "cursor-last-key"])
async def test_rows_shifting_during_a_sweep_make_no_false_event_and_miss_none(tmp_path: Path, case: str) -> None:
    """Orders created and moved while a sweep pages (rows pushed down, rows seen twice) give no false event and
    no duplicate; over this poll and the next, every net change is reported exactly once."""
    async with baselined(tmp_path, case, seed=9, orders=14) as (sim, poller, src):
        start = len(sim.history)
        sim.step(6)
        sim.faults.queue["generic"].extend([None, "drift_insert", None, "drift_insert"])  # type: ignore[list-item]
        stepped = len(sim.history)
        during = await poller.poll(src)
        assert sum(ch.kind == "created" for ch in sim.history[stepped:]) >= 2  # the drift happened mid-sweep
        after = await poller.poll(src)
        assert after.ok, after.error
        events = [got_one for result in (during, after) for got_one in got(result)]
        assert len(events) == len(set(events))  # nothing reported twice
        assert set(events) == net_changes(sim.history[start:], dict(src.states))
        assert not (await poller.poll(src)).events


@pytest.mark.parametrize("preset", PRESET_NAMES)
async def test_an_incremental_poll_asked_of_a_json_source_is_a_full_sweep(tmp_path: Path, preset: str) -> None:
    """``poll --incremental`` on a json source sweeps the whole list (the planner knows only the seed APIs) and
    still reports the change."""
    sim = ShopSimulator(preset, seed=4)  # type: ignore[arg-type]
    keys = sim.create(5)
    with SimServer(sim) as server:
        conf = write_config(tmp_path, "shop", preset_keys(preset, sim, server.url))
        async with polling(conf) as poller:
            assert (await poller.poll(conf.sources["shop"])).baseline
            start = len(sim.history)
            sim.move(keys[0], sim.transitions[sim.state_of(keys[0]) or ""][-1], force=True)
            result = await poller.poll(conf.sources["shop"], full=False)
    assert result.mode == "full", result
    assert got(result) == net_changes(sim.history[start:], dict(conf.sources["shop"].states))


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("case", ["offset", "page", "cursor-last-key", "cursor-token", "link"])
async def test_faulty_answers_are_retried_and_never_make_a_false_event(tmp_path: Path, case: str) -> None:
    """With 30% of the answers failing (5xx, 429, HTML, truncated JSON, error bodies) over rounds of random
    changes: no order that exists is reported vanished, none appears twice, and after one clean poll the snapshot
    is exactly the simulator's orders in their raw states."""
    async with baselined(tmp_path, case, seed=13, orders=12) as (sim, poller, src):
        kinds = {"http500", "http503", "rate_limit", "html", "truncated", "error_body"}
        sim.faults = faults = Counting(rate=0.3, kinds=kinds, rng=sim.faults.rng, queue=sim.faults.queue)
        appeared: list[str] = []
        for _ in range(8):
            sim.step(8)
            result = await poller.poll(src)
            alive = set(sim.order_keys())
            assert not [e for e in result.events if e.kind == "vanished" and e.order_id in alive]
            appeared += [e.order_id for e in result.events if e.kind == "appeared"]
        assert faults.served >= 3 and len(appeared) == len(set(appeared))
        faults.rate = 0.0
        final = await poller.poll(src)
        assert final.ok, final.error
        stored = {row.key: row.raw_state for row in poller.store.orders("api")}
    assert stored == {key: sim.state_of(key) for key in sim.order_keys()}


async def test_an_order_the_list_leaves_out_but_its_detail_still_has_is_not_vanished(tmp_path: Path) -> None:
    """WooCommerce listed with status=any (which leaves trash out): a trashed order is missing from the sweep, its
    detail still answers it, so the poll reports it moved to trash (from the detail), never vanished."""
    sim = ShopSimulator("woocommerce", seed=3)
    keys = sim.create(6)
    with SimServer(sim) as server:
        keys_toml = {**preset_keys("woocommerce", sim, server.url), "params": {"status": "any"}}
        conf = write_config(tmp_path, "shop", keys_toml)
        src = conf.sources["shop"]
        async with polling(conf) as poller:
            assert (await poller.poll(src)).baseline
            sim.act(keys[0], "trash")
            result = await poller.poll(src)
            assert result.outcome is Outcome.OK, result.error
            assert [(e.order_id, e.kind, e.raw_to) for e in result.events] == [(keys[0], "transition", "trash")]

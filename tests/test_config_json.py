"""Config of ``kind = "json"`` sources: presets fill keys and explicit keys override them, bad values name the key
and the value (exit 2), and ``check --connect`` names the key whose path finds nothing in what the API sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderwatch.config import load_config
from orderwatch.errors import ConfigError
from orderwatch.simulator import SimServer
from orderwatch.simulator.shops import ShopSimulator
from orderwatch.sources import Source
from tests.conftest import run_cli

WOO = """
[sources.shop]
kind = "json"
preset = "woocommerce"
base_url = "https://shop.example.com"
token = "ck_1:cs_2"
"""


def write(tmp_path: Path, text: str) -> Path:
    """``text`` as a config file (database in ``tmp_path``)."""
    path = tmp_path / "orderwatch.toml"
    path.write_text(f'database = "{tmp_path / "ow.db"}"\n' + text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    """The problem lines load_config reports for ``path``."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return caught.value.problems


def test_a_preset_fills_every_key_and_explicit_keys_override_it(tmp_path: Path) -> None:
    """``preset = "woocommerce"`` gives path, auth, paging, filters and states; a key of the source's own table
    replaces the preset's, and its ``paging``/``states`` tables merge key by key; a state is matched whatever its
    case and sent in filters as written."""
    src = load_config(write(tmp_path, WOO), environ={}).sources["shop"]
    assert src.api is not None and src.auth == "basic" and not src.incremental
    assert src.api.path == "/wp-json/wc/v3/orders" and src.api.paging.style == "page"
    assert src.api.paging.total == "header:X-WP-Total" and src.api.filters.state_param == "status"
    assert src.states["processing"] == "Paid"
    text = WOO + 'path = "/shop/wp-json/wc/v3/orders"\nstates = { processing = "Pending" }\n'
    text += '[sources.shop.paging]\nsort = { orderby = "id" }\n'
    src = load_config(write(tmp_path, text), environ={}).sources["shop"]
    assert src.api is not None and src.api.path == "/shop/wp-json/wc/v3/orders"
    assert src.states["processing"] == "Pending" and src.states["completed"] == "Finished"
    assert dict(src.api.paging.sort) == {"orderby": "id"} and src.api.paging.max_size == 100
    text = WOO + 'states = { "On-Hold" = "Pending" }\n'
    src = load_config(write(tmp_path, text), environ={}).sources["shop"]
    assert src.states["on-hold"] == "Pending"  # answers are matched whatever the case
    assert src.api is not None and "On-Hold" in src.api.raw_states  # and filters send it as written


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ('preset = "woocomerce"\n', 'sources.shop.preset: unknown preset (did you mean "woocommerce"?)'),
        (
            'auth = "token"\n',
            'sources.shop.auth: expected "bearer", "basic", "header:NAME" or "query:NAME", got "token"',
        ),
        ('[sources.shop.paging]\nstyle = "scroll"\n', "sources.shop.paging.style: expected "),
        ('[sources.shop.paging]\ntotal = "header:"\n', 'sources.shop.paging.total: expected "header:NAME"'),
        ('detail_path = "/orders/1"\n', 'sources.shop.detail_path: must hold "{key}"'),
        ("incremental = true\n", 'sources.shop.incremental: incremental polls are not available for kind = "json"'),
        (
            '[sources.shop.filters]\nstate_parm = "status"\n',
            'sources.shop.filters.state_parm: unknown key (did you mean "state_param"?)',
        ),
    ],
)
def test_a_bad_json_key_names_the_key_and_the_value(tmp_path: Path, extra: str, line: str) -> None:
    """Each bad value of a json source is one problem line naming its key (and the value where it can be shown)."""
    text = WOO.replace('preset = "woocommerce"\n', "") + 'path = "/x"\n' if extra.startswith("preset") else WOO
    lines = problems_of(write(tmp_path, text + extra))
    assert any(found.startswith(line) for found in lines), lines


def test_json_keys_on_another_kind_and_a_json_source_without_path_are_problems(tmp_path: Path) -> None:
    """``items`` on an acedata source is refused; a json source without preset must say its ``path``."""
    text = '[sources.ace]\nkind = "acedata"\nbase_url = "https://a.example.com"\nitems = "data"\n'
    text += '[sources.api]\nkind = "json"\nbase_url = "https://b.example.com"\n'
    lines = problems_of(write(tmp_path, text))
    assert 'sources.ace.items: only for kind = "json"' in lines
    assert any(line.startswith("sources.api.path: required for kind") for line in lines), lines


def test_the_cli_exits_2_naming_the_bad_key(tmp_path: Path) -> None:
    """``orderwatch check`` with a bad json key exits 2 and names the key and value."""
    ran = run_cli(write(tmp_path, WOO + '[sources.shop.paging]\nstyle = "scroll"\n'), "check")
    assert ran.code == 2
    assert "sources.shop.paging.style" in ran.err and "scroll" in ran.err


def test_check_connect_names_the_key_whose_path_finds_nothing_and_the_fields_sent(tmp_path: Path) -> None:
    """Against the simulated WooCommerce, a ``state`` path naming no field says so with the fields the first
    order has; a right config says OK; an optional path that finds nothing is a warning; a wrong token is an auth
    failure that names the token keys; the token is never printed."""
    sim = ShopSimulator("woocommerce", seed=2)
    sim.create(3)
    with SimServer(sim) as server:
        base = (
            f'[sources.shop]\nkind = "json"\npreset = "woocommerce"\nbase_url = "{server.url}"\ntoken = "{sim.token}"\n'
        )
        ok = run_cli(write(tmp_path, base), "check", "--connect")
        assert ok.code == 0 and "shop: OK" in ok.out, ok.out + ok.err
        wrong = run_cli(write(tmp_path, base + 'state = "state"\n'), "check", "--connect")
        assert wrong.code == 1
        assert "sources.shop.state: no field `state` in the first order; fields are id, parent_id, status" in wrong.out
        items = run_cli(write(tmp_path, base + 'items = "orders"\n'), "check", "--connect")
        assert "sources.shop.items: no list at `orders`" in items.out and "it is a JSON list" in items.out
        optional = run_cli(write(tmp_path, base + 'created = "made_at"\n'), "check", "--connect")
        assert optional.code == 0, optional.out
        assert "WARNING — sources.shop.created: no time at `made_at` in the first order; fields are " in optional.out
        bad = base.replace(sim.token, "ck_x:cs_y")
        denied = run_cli(write(tmp_path, bad), "check", "--connect")
        assert denied.code == 1 and "token rejected (401" in denied.out, denied.out
        for ran in (ok, wrong, items, denied):
            assert sim.token not in ran.out + ran.err


def test_the_cli_polls_a_preset_source_baseline_then_one_event_per_change(tmp_path: Path) -> None:
    """``orderwatch poll`` against the simulated Paddle API: a silent baseline, then each change once as an
    ndjson event with raw and canonical states and the order as the API sent it."""
    sim = ShopSimulator("paddle-transactions", seed=6)
    keys = sim.create(4, state="ready")
    with SimServer(sim) as server:
        text = f'[sources.billing]\nkind = "json"\npreset = "paddle-transactions"\nbase_url = "{server.url}"\n'
        config = write(tmp_path, text + 'token = "${PADDLE_KEY}"\npage_size = 3\n')
        env = {"PADDLE_KEY": sim.token}
        first = run_cli(config, "poll", "--format", "ndjson", env=env)
        assert first.code == 0 and first.ndjson() == [], first.err
        sim.move(keys[1], "paid")
        ran = run_cli(config, "poll", "--format", "ndjson", env=env)
    assert ran.code == 0, ran.err
    (event,) = ran.ndjson()
    assert (event["order_id"], event["kind"], event["raw_from"], event["raw_to"]) == (
        keys[1],
        "transition",
        "ready",
        "paid",
    )
    assert (event["from_state"], event["to_state"]) == ("Pending", "Paid") and event["order"]["id"] == keys[1]


def test_check_connect_says_when_an_empty_first_page_leaves_the_paths_unchecked(tmp_path: Path) -> None:
    """A json source whose list is empty passes ``check --connect`` with a warning that its paths are unchecked."""
    sim = ShopSimulator("stripe-payment-intents", seed=1)
    with SimServer(sim) as server:
        text = f'[sources.pay]\nkind = "json"\npreset = "stripe-payment-intents"\nbase_url = "{server.url}"\n'
        ran = run_cli(write(tmp_path, text + 'token = "${K}"\n'), "check", "--connect", env={"K": sim.token})
    assert ran.code == 0, ran.out + ran.err
    assert "pay: OK — 0 orders on the first page" in ran.out
    assert "pay: WARNING — the first page has no order: the key, state and time paths could not be checked" in ran.out


def test_the_readme_examples_of_watching_another_api_load(tmp_path: Path) -> None:
    """Every TOML block of the README's "Watching another API" section is a valid config (presets with the default
    page size, the worked generic example)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Watching another API", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```toml\n")[1:]]
    assert len(blocks) == 2
    names = ("WC_KEY", "WC_SECRET", "SHOPIFY_TOKEN", "STRIPE_SECRET_KEY", "PADDLE_API_KEY", "ORDERS_API_KEY")
    environ = dict.fromkeys(names, "t0ken")
    loaded: dict[str, Source] = {}
    for block in blocks:
        loaded.update(load_config(write(tmp_path, block), environ=environ).sources)
    assert sorted(loaded) == ["billing", "orders", "payments", "shop", "store"]
    assert all(src.api is not None for src in loaded.values())
    assert loaded["orders"].api is not None and loaded["orders"].api.paging.cursor == "paging.next"

"""Runaway templates: a rule's template that loops for ever or builds a huge text stops at its time or size limit,
falls back to the default text and says so; it cannot delay other notifications by more than its limit, and SIGTERM
still stops the daemon in time while one renders."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from orderwatch.core import render
from orderwatch.core.model import Event, canonical_json
from orderwatch.core.sandbox import MAX_TEXT, RENDER_SECONDS
from orderwatch.delivery import deliverer
from orderwatch.service.daemon import GRACE_PERIOD
from orderwatch.simulator import SimServer, Simulator
from tests.conftest import ACE_TOKEN
from tests.hostile import JsonDaemon
from tests.receivers import WebhookReceiver

SLACK = 1.5  # seconds a loaded test machine may add to a limit
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
ATTACKS = {
    "nested range loops": NESTED_LOOPS,
    "nested loops that output": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "loops over a string": "{% set s = 'x' * 60000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
    "a gigabyte string": "{{ 'x' * 10**9 }}",
    "a huge integer": "{% set n = 10**6 %}{{ 2 ** n }}",
    "repeated squaring": "{% set ns = namespace(x=7) %}{% for i in range(64) %}{% set ns.x = ns.x*ns.x %}{% endfor %}",
    "doubling with ~": "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s~ns.s %}{% endfor %}",
    "doubling with +": "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s+ns.s %}{% endfor %}",
    "|center": "{{ 'x'|center(10**9) }}",
    "str.ljust": "{{ 'x'.ljust(10**9) }}",
    "|format width": "{{ '%0999999999d'|format(1) }}",
    "% width": "{{ '%0999999999d' % 1 }}",
    "% star width": "{{ '%*d' % (999999999, 1) }}",
    "str.format width": "{{ '{:>999999999}'.format(1) }}",
    "|replace blow-up": "{{ ('x' * 60000)|replace('', 'y' * 60000) }}",
    "str.join blow-up": "{{ ('y' * 60000).join('x' * 60000) }}",
    "|join blow-up": "{{ range(60000)|join('x' * 60000) }}",
    "|indent blow-up": "{{ ('x\n' * 30000)|indent('y' * 60000) }}",
    "|wordwrap blow-up": "{{ ('x ' * 30000)|wordwrap(1, wrapstring='y' * 60000) }}",
    "|batch fill": "{{ [1]|batch(10**9, 'x')|list }}",
    "exponential macro": "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "endless macro": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "a huge set block": "{% set s %}{% for i in range(100000) %}{{ 'x' * 60000 }}{% endfor %}{% endset %}{{ s }}",
    "a huge output": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "range over the cap": "{{ range(10**9)|length }}",
    "lipsum": "{{ lipsum(10**6) }}",
    "list.append": "{% set l = [] %}{{ l.append(1) }}",
}


def event() -> Event:
    """An Ace order going Pending → Paid."""
    order = {"id": "o-1", "state": "Paid", "price": 9.5, "items": list(range(50))}
    return Event(
        "ace", "o-1", "transition", "Pending", "Paid", "Pending", "Paid", "2026-11-22T10:00:00.123456Z",
        canonical_json(order), 1,
    )  # fmt: skip


@pytest.mark.parametrize("template", ATTACKS.values(), ids=ATTACKS.keys())
def test_a_runaway_template_falls_back_to_the_default_within_its_limit(template: str) -> None:
    """Each attack is stopped by a limit well within RENDER_SECONDS (plus slack); the default body is used."""
    default = render.render_event(event(), title=None, body=None)
    started = time.monotonic()
    notice = render.render_event(event(), title="{{ order.id }} changed", body=template)
    assert time.monotonic() - started < RENDER_SECONDS + SLACK
    assert (notice.title, notice.body) == ("o-1 changed", default.body)
    assert notice.fallback is not None
    assert notice.fallback.startswith("body template: ")


def test_title_and_body_share_one_time_limit() -> None:
    """A runaway title and a runaway body together take one time limit, not two."""
    started = time.monotonic()
    notice = render.render_event(event(), title=NESTED_LOOPS, body=NESTED_LOOPS)
    assert time.monotonic() - started < RENDER_SECONDS + SLACK
    assert notice.fallback is not None
    assert "time limit" in notice.fallback
    assert notice.title == render.render_event(event(), title=None, body=None).title


def test_ordinary_templates_still_work() -> None:
    """Filters, string and mapping methods, loops, macros, format and namespaces render as before."""
    body = (
        "{% macro money(x) %}{{ '%.2f'|format(x) }} USD{% endmacro %}"
        "{{ event.from_state }} → {{ event.to_state }}: {{ money(order.price) }}; {{ order.id|upper }} "
        "{{ '{:>4}'.format(order.get('id')) }} {{ 'a,b'.split(',')|join('-') }} {{ order['items']|length }} "
        "{% set ns = namespace(n=0) %}{% for i in order['items'] if i is even %}{% set ns.n = ns.n + i %}{% endfor %}"
        "{{ ns.n }} {% for k in order|dictsort %}{{ loop.index }}{% endfor %} {{ ('ab' * 3)|center(10) }}"
    )
    notice = render.render_event(event(), title=None, body=body)
    assert notice.fallback is None
    assert notice.body == "Pending → Paid: 9.50 USD; O-1  o-1 a-b 50 600 1234   ababab"


def test_the_size_limit_allows_a_big_but_bounded_body() -> None:
    """A body just under the size limit renders; one just over it falls back."""
    fits = render.render_event(event(), title=None, body=f"{{{{ 'x' * {MAX_TEXT - 10} }}}}")
    assert (fits.fallback, len(fits.body)) == (None, MAX_TEXT - 10)
    over = render.render_event(event(), title=None, body=f"{{{{ 'x' * {MAX_TEXT + 1} }}}}")
    assert over.fallback is not None
    assert "size limit" in over.fallback


@pytest.mark.anyio
async def test_a_render_that_will_not_stop_is_left_behind_at_the_backstop() -> None:
    """The delivery step waits for a render thread at most its limit, and then goes on without it."""
    gate = threading.Event()
    started = time.monotonic()
    try:
        result = await deliverer._in_own_thread(lambda: gate.wait(30), 0.3)
        assert result is None
        assert time.monotonic() - started < 0.3 + SLACK
        assert await deliverer._in_own_thread(lambda: "done", 5) == "done"
    finally:
        gate.set()


# ---- the daemon ---------------------------------------------------------------------------------------------------


def runaway_config(path: Path, url: str, hook: WebhookReceiver) -> Path:
    """One simulated Ace source; per transition a notice from a runaway template, then one from a plain rule."""
    path.write_text(
        f'database = "{(path.parent / "ow.db").as_posix()}"\n\n'
        '[defaults]\ninterval = "1s"\njitter = "0s"\ntimeout = "5s"\n\n'
        f'[sources.ace]\nkind = "acedata"\nbase_url = "{url}"\ntoken = "{ACE_TOKEN}"\npage_size = 10\n\n'
        f'[channels.slow]\nurls = ["{hook.url_for_apprise}"]\ndigest_over = 1000\n\n'
        f'[channels.fast]\nurls = ["{hook.url_for_apprise}"]\ndigest_over = 1000\n\n'
        '[[rules]]\nname = "runaway"\nevents = ["transition"]\nchannels = ["slow"]\n'
        f'title = "runaway {{{{ event.id }}}}"\nbody = "{NESTED_LOOPS}"\n\n'
        '[[rules]]\nname = "plain"\nevents = ["transition"]\nchannels = ["fast"]\ntitle = "plain {{ event.id }}"\n\n'
        '[delivery]\ninterval = "200ms"\nretry_initial = "200ms"\nretry_max = "1s"\n\n[log]\nformat = "json"\n'
    )
    path.chmod(0o600)
    return path


def when(line: dict[str, object]) -> float:
    """The POSIX time of a JSON log line."""
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    """A json:// webhook receiver on loopback."""
    with WebhookReceiver(path="/hooks/limits") as receiver:
        yield receiver


def test_a_runaway_template_delays_the_next_notice_by_at_most_its_limit(
    tmp_path: Path, sim: Simulator, server: SimServer, hook: WebhookReceiver
) -> None:
    """The daemon sends the runaway rule's notice with the default body, says so, and the plain notice queued after it
    goes out within the time limit (plus slack) of the poll that made them."""
    daemon = JsonDaemon(runaway_config(tmp_path / "ow.toml", server.url, hook))
    try:
        daemon.wait_log("polled", source="ace", baseline=True)
        pending = [o["id"] for o in sim.orders("ace") if o["state"] == "Pending"]
        sim.set_state("ace", pending[0], "Paid")
        [polled] = daemon.wait_log("polled", source="ace", events=1)
        [fallback] = daemon.wait_log("template failed; default used", rule="runaway")
        [plain] = daemon.wait_log("delivered", channel="fast")
        assert "time limit" in str(fallback["reason"])
        assert when(plain) - when(polled) < RENDER_SECONDS + SLACK
        received = {str(r.body["title"]).split()[0]: str(r.body["message"]) for r in hook.wait_for(2, timeout=20)}
        assert received.keys() == {"runaway", "plain"}
        assert received["runaway"].startswith("Source: ace\nOrder: ")
        assert daemon.stop(timeout=GRACE_PERIOD) == 0
    finally:
        daemon.close()


def test_sigterm_stops_the_daemon_while_a_runaway_template_renders(
    tmp_path: Path, sim: Simulator, server: SimServer, hook: WebhookReceiver
) -> None:
    """SIGTERM in the middle of a delivery step full of runaway templates: the daemon is gone well within its grace
    period, with exit code 0."""
    daemon = JsonDaemon(runaway_config(tmp_path / "ow.toml", server.url, hook))
    try:
        daemon.wait_log("polled", source="ace", baseline=True)
        for key in [o["id"] for o in sim.orders("ace") if o["state"] == "Pending"][:4]:
            sim.set_state("ace", key, "Failed")
        daemon.wait_log("template failed; default used", rule="runaway")
        started = time.monotonic()
        assert daemon.stop(timeout=GRACE_PERIOD) == 0
        assert time.monotonic() - started < GRACE_PERIOD / 2
        assert daemon.logs("stopped")
    finally:
        daemon.close()

"""``orderwatch demo``: the simulator (both API formats) + the daemon + a console channel, in one process.

It writes a real config file into a temporary folder, so what runs is exactly what a user's config would run.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

DEMO_CONFIG = """\
# Written by `orderwatch demo`: the built-in simulator's two APIs, watched every {interval}s.
database = "{database}"

[defaults]
interval = "{interval}s"
jitter = "0s"
timeout = "5s"

[sources.ace]
kind = "acedata"
base_url = "{url}"
token = "demo-ace-token"
page_size = 25

[sources.images]
kind = "lsky"
base_url = "{url}"
token = "demo-lsky-token"
page_size = 25

[channels.console]
urls = ["console://"]
digest_over = 8

[[rules]]
name = "everything"
events = ["transition", "appeared", "vanished"]
channels = ["console"]

[delivery]
interval = "1s"

[log]
format = "console"
"""


def run_demo(*, n_orders: int, every: float, interval: float, database: str | None) -> int:
    """Run the demo until Ctrl-C; returns the exit code."""
    from orderwatch.config import load_config, secrets
    from orderwatch.service import log
    from orderwatch.service.daemon import run_daemon
    from orderwatch.simulator import SimServer, Simulator, run_clock

    sim = Simulator(seed=7, ace_token="demo-ace-token", lsky_token="demo-lsky-token", max_page_size=50)
    sim.add_ace(n_orders)
    sim.add_lsky(n_orders)
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="orderwatch-demo-") as tmp, SimServer(sim) as server:
        db = Path(database) if database else Path(tmp) / "demo.db"
        path = Path(tmp) / "orderwatch.toml"
        path.write_text(DEMO_CONFIG.format(interval=interval, database=db.as_posix(), url=server.url))
        print(f"orderwatch demo: simulator at {server.url}; config {path}; Ctrl-C stops.", flush=True)
        conf = load_config(path)
        secrets.remember_config(conf)
        log.setup(conf.log.format, conf.log.level)
        clock = run_clock(sim, every, stop)
        try:
            return run_daemon(conf, config_path=str(path), database=None)
        finally:
            stop.set()
            clock.join(timeout=5)

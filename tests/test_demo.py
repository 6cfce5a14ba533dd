"""`orderwatch demo` (what `make demo` runs): notices scroll by within seconds and Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time

WAIT = 30.0


def test_demo_prints_notices_and_stops_cleanly_on_ctrl_c() -> None:
    """The demo prints a console notice for a simulated change, then exits 0 on SIGINT."""
    with subprocess.Popen(
        [sys.executable, "-m", "orderwatch", "demo", "--every", "0.2", "--interval", "0.5", "--orders", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    ) as demo:
        assert demo.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + WAIT
        with selectors.DefaultSelector() as selector:
            selector.register(demo.stdout, selectors.EVENT_READ)
            while not any(line.startswith("State: ") for line in seen):
                assert time.monotonic() < deadline, f"no notice within {WAIT}s: {seen}"
                if selector.select(timeout=1.0):
                    seen.append(demo.stdout.readline())
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=WAIT)
        assert demo.returncode == 0, err
        assert "stopped" in err
        assert seen[0].startswith("orderwatch demo: simulator at http://127.0.0.1:")

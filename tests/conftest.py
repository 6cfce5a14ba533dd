"""Shared fixtures: the simulator on loopback, config files, and running the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderwatch.simulator import SimServer, Simulator

ACE_TOKEN = "platform-v1-test-ace-0123456789"
LSKY_TOKEN = "1|lsky-test-token-abcdefghijkl"


@pytest.fixture
def anyio_backend() -> str:
    """APScheduler and apprise's async paths need asyncio."""
    return "asyncio"


@pytest.fixture
def sim() -> Simulator:
    """A seeded simulator that clamps page sizes to 7, with a few orders in each API."""
    s = Simulator(seed=11, ace_token=ACE_TOKEN, lsky_token=LSKY_TOKEN, max_page_size=7)
    s.add_ace(12)
    s.add_lsky(12)
    return s


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimServer]:
    """The simulator served on 127.0.0.1."""
    with SimServer(sim) as srv:
        yield srv


def config_text(url: str, database: Path, *, extra: str = "", page_size: int = 10, sources: str = "ace,images") -> str:
    """A config for both simulated APIs (tokens inline), plus ``extra`` TOML appended."""
    parts = [f'database = "{database.as_posix()}"\n\n[defaults]\ninterval = "1s"\njitter = "0s"\ntimeout = "5s"\n']
    if "ace" in sources.split(","):
        parts.append(
            f'[sources.ace]\nkind = "acedata"\nbase_url = "{url}"\ntoken = "{ACE_TOKEN}"\npage_size = {page_size}\n'
        )
    if "images" in sources.split(","):
        parts.append(
            f'[sources.images]\nkind = "lsky"\nbase_url = "{url}"\ntoken = "{LSKY_TOKEN}"\npage_size = {page_size}\n'
        )
    return "\n".join(parts) + "\n" + extra


@pytest.fixture
def config_file(tmp_path: Path, server: SimServer) -> Path:
    """A config file for both simulated APIs, database in tmp_path."""
    path = tmp_path / "orderwatch.toml"
    path.write_text(config_text(server.url, tmp_path / "ow.db"))
    return path


@dataclass
class Ran:
    """A finished CLI run."""

    code: int
    out: str
    err: str

    def ndjson(self) -> list[dict[str, Any]]:
        """stdout parsed as one JSON object per line."""
        return [orjson.loads(line) for line in self.out.splitlines() if line.strip()]


def run_cli(config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Ran:
    """Run ``python -m orderwatch --config CONFIG ARGS`` and capture its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "orderwatch", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {}), "NO_COLOR": "1"},
        check=False,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)

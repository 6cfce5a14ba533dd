"""deploy/orderwatch.service passes ``systemd-analyze verify`` and scores an exposure of at most 1.5."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "orderwatch.service"


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart names this virtualenv's ``orderwatch``.

    ``systemd-analyze verify`` checks that ExecStart's binary exists; the shipped unit names /usr/local/bin, which a
    test machine need not have. Everything else is the shipped file, byte for byte.
    """
    script = Path(sys.executable).parent / "orderwatch"
    assert script.is_file(), f"the console script {script} is missing: install the package (pip install -e .)"
    text = UNIT.read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=/usr/local/bin/orderwatch run$", text, re.MULTILINE)
    copy = tmp_path / "orderwatch.service"
    copy.write_text(
        re.sub(r"^ExecStart=\S+", f"ExecStart={script}", text, count=1, flags=re.MULTILINE), encoding="utf-8"
    )
    return copy


def _settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_verifies_without_warnings(unit: Path) -> None:
    """systemd-analyze verify accepts the unit and says nothing about it (unknown keys only warn, so check stderr)."""
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    about_unit = [line for line in done.stderr.splitlines() if unit.name in line]
    assert done.returncode == 0, done.stderr
    assert about_unit == []


def test_unit_exposure_at_most_1_5(unit: Path) -> None:
    """systemd-analyze security --offline rates the unit's exposure 1.5 or lower (threshold 15 on its 0–100 scale)."""
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=15", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert match is not None, done.stdout + done.stderr
    assert float(match.group(1)) <= 1.5
    assert done.returncode == 0, done.stdout + done.stderr


def test_unit_has_the_required_settings() -> None:
    """The unit is Type=notify with a watchdog, runs as a dynamic user, may open 4096 files and stops within 30 s."""
    settings = _settings(UNIT.read_text(encoding="utf-8"))
    assert settings["Type"] == ["notify"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["DynamicUser"] == ["yes"]
    assert settings["StateDirectory"] == ["orderwatch"]
    assert settings["ConfigurationDirectory"] == ["orderwatch"]
    assert settings["TimeoutStopSec"] == ["30s"]
    assert "WatchdogSec" in settings
    assert settings["LoadCredential"]
    assert settings["Environment"][0] == "ORDERWATCH_CONFIG=/etc/orderwatch/orderwatch.toml"
    assert settings["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert int(settings["LimitNOFILE"][0]) >= 4096
    assert settings["SystemCallFilter"][0] == "@system-service"
    for key in ("ProtectSystem", "NoNewPrivileges", "PrivateTmp"):
        assert settings[key] in (["yes"], ["strict"]), key


def test_grace_period_below_stop_timeout() -> None:
    """The daemon's shutdown grace period ends before systemd's TimeoutStopSec would SIGKILL it."""
    from orderwatch.service.daemon import GRACE_PERIOD

    stop = _settings(UNIT.read_text(encoding="utf-8"))["TimeoutStopSec"][0]
    assert stop.endswith("s")
    assert float(stop[:-1]) >= GRACE_PERIOD + 5

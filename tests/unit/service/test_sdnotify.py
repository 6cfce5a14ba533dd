"""sd_notify: one datagram to $NOTIFY_SOCKET, path or abstract; quiet outside systemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderwatch.service.sdnotify import notify, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A real AF_UNIX datagram socket in tmp_path, as systemd would offer."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def test_notify_sends_one_datagram(listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """notify() delivers the message verbatim to the socket named by $NOTIFY_SOCKET."""
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify("READY=1\nSTATUS=polling 2 sources") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=polling 2 sources"


def test_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A leading @ in $NOTIFY_SOCKET names a Linux abstract socket."""
    name = f"orderwatch-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("WATCHDOG=1") is True
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_without_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without $NOTIFY_SOCKET, or with nobody listening, notify() returns False and does not raise."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody.sock"))
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    assert notify("READY=1") is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pings are due at a quarter of $WATCHDOG_USEC, only for the process $WATCHDOG_PID names (when set)."""
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert watchdog_interval() is None

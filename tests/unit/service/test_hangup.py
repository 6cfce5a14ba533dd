"""Hangups: SIGHUP counted and passed on from install() on, ignored after ignore(); never the default action."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from orderwatch.service.hangup import Hangups


@pytest.fixture
def restore_sighup() -> Iterator[None]:
    """Puts back this process's SIGHUP disposition after the test."""
    previous = signal.getsignal(signal.SIGHUP)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.usefixtures("restore_sighup")
def test_hangups_counted_woken_then_ignored() -> None:
    """Each SIGHUP counts and calls ``wake``; after ``ignore()`` SIGHUP is ignored, not left at the default."""
    hangups = Hangups()
    woken: list[int] = []
    hangups.install()
    hangups.install()
    os.kill(os.getpid(), signal.SIGHUP)
    assert hangups.count == 1
    hangups.wake = lambda: woken.append(hangups.count)
    os.kill(os.getpid(), signal.SIGHUP)
    assert hangups.count == 2
    assert woken == [2]
    hangups.ignore()
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGHUP)
    assert hangups.count == 2

"""SIGHUP for the whole life of ``orderwatch run``: its default action ends the process, so the daemon never leaves it
at the default, from ``install()`` to its exit.

A Python-level handler counts hang-ups from the first moment and, once the event loop has said how (``wake``), wakes
it for each; a hang-up before that is taken when the daemon has started. asyncio's own signal handling is not used
for SIGHUP because removing a handler there restores the default action, which a late SIGHUP would then meet while
the daemon stops. ``ignore()`` ends it: from there the process only exits.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType


class Hangups:
    """The process's SIGHUPs: ``count`` so far; ``wake`` (if set) is called in the main thread on each."""

    def __init__(self) -> None:
        self.count = 0
        self.wake: Callable[[], None] | None = None
        self.installed = False

    def install(self) -> None:
        """Catch SIGHUP from now on (idempotent)."""
        if not self.installed:
            signal.signal(signal.SIGHUP, self._caught)
            self.installed = True

    def ignore(self) -> None:
        """Ignore SIGHUP from now on (the daemon is done; it never reverts to the default)."""
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.installed = False
        self.wake = None

    def _caught(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        wake = self.wake
        if wake is not None:
            wake()


HANGUPS = Hangups()  # signals belong to the process: one instance


def install() -> Hangups:
    """Catch SIGHUP from now on; the process's ``Hangups``. Call it as early as the process is a daemon."""
    HANGUPS.install()
    return HANGUPS

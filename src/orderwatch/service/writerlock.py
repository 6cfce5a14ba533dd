"""One daemon per database: an exclusive ``flock`` on a file beside the database (``DATABASE.lock``), which holds the
daemon's pid.

The kernel drops the lock when the process ends, however it ends (kill -9 too), so a crashed daemon never blocks the
next start; a second daemon is refused with the first one's pid. The pid in the file only names the holder: the
lock, not the file's content, says whether a daemon runs.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from orderwatch.errors import StoreError


def lock_path(database: str | os.PathLike[str]) -> Path:
    """The lock file of ``database``: beside it, named after it."""
    path = Path(database)
    return path.with_name(path.name + ".lock")


class WriterLock:
    """The lock of one database, held by this process until ``release()`` (or its end)."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, database: str | os.PathLike[str]) -> WriterLock:
        """Take the lock of ``database`` and write this process's pid in it; StoreError naming the holder's pid when
        another process has it, or when the lock file cannot be opened."""
        path = lock_path(database)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot open database {database}: its lock file {path}: {exc.strerror} (check the path, its "
                "permissions and free space)"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _pid_in(fd)
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise StoreError(
                    f"another orderwatch daemon (pid {holder or 'unknown'}) is running on {database}: one database "
                    f"has one daemon; stop that one first (systemctl stop orderwatch, or kill {holder or 'PID'}), "
                    "or give this one another database"
                ) from None
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        """Let the next daemon start (idempotent)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.ftruncate(fd, 0)
            os.close(fd)  # closing the only descriptor drops the lock

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _pid_in(fd: int) -> int | None:
    """The pid written in a lock file, or None (not written yet, or not a pid)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

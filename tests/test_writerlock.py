"""WriterLock: one holder per database, named by pid in the refusal; released on release() or the process's end."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orderwatch.errors import StoreError
from orderwatch.service.writerlock import WriterLock, lock_path


def test_second_holder_refused_with_the_first_pid(tmp_path: Path) -> None:
    """While one holder has the lock, another is refused with its pid; after release() the lock can be had again."""
    db = tmp_path / "state" / "ow.db"
    with WriterLock.acquire(db) as lock:
        assert lock.path == lock_path(db) == tmp_path / "state" / "ow.db.lock"
        assert lock.path.read_text() == f"{os.getpid()}\n"
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        with pytest.raises(StoreError, match=rf"another orderwatch daemon \(pid {os.getpid()}\) is running on "):
            WriterLock.acquire(db)
    WriterLock.acquire(db).release()


def test_lock_dropped_when_the_holder_is_killed(tmp_path: Path) -> None:
    """A holder killed with SIGKILL leaves its pid in the file, but not the lock: the next acquire succeeds."""
    db = tmp_path / "ow.db"
    code = "import sys; from orderwatch.service.writerlock import WriterLock; WriterLock.acquire(sys.argv[1]);"
    code += " print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(StoreError, match=rf"pid {holder.pid}\)"):
            WriterLock.acquire(db)
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdin is not None:
            holder.stdin.close()
        if holder.stdout is not None:
            holder.stdout.close()
    assert lock_path(db).read_text() == f"{holder.pid}\n"
    WriterLock.acquire(db).release()


def test_unopenable_lock_file_is_a_store_error(tmp_path: Path) -> None:
    """A lock file that cannot be created is the database's error, naming both files and what to check."""
    (tmp_path / "ow.db.lock").mkdir()
    with pytest.raises(
        StoreError, match=r"cannot open database .*ow\.db: its lock file .*ow\.db\.lock: .*check the path"
    ):
        WriterLock.acquire(tmp_path / "ow.db")

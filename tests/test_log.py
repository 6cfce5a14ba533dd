"""Logging: JSON under journald, readable lines on a terminal, secrets redacted, tracebacks without locals.

Each case runs in a child process: ``log.setup`` configures structlog and the root logger for the whole process, and
the tests must see exactly what an operator would, on a real file, pipe or pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

# What the child logs: an orderwatch event, a stdlib third-party logger's record and an exception with a secret local.
CHILD = r"""
import logging, sys
import structlog
from orderwatch.service import log

log.register_secrets(["tok-registered-0123456789"])
log.setup(sys.argv[1], "info")
logger = structlog.get_logger("orderwatch.test")
logger.info(
    "polled",
    source="ace",
    orders=3,
    url="https://bot:hunter2-password@smtp.example.com/path",
    header="Authorization: Bearer abc.def.ghi",
    token="tok-registered-0123456789",
)
logging.getLogger("apscheduler.scheduler").warning("job %s saw %s", "poll-ace", "tok-registered-0123456789")
logging.getLogger("httpx").info("an info line below the third-party threshold")

def fetch(token):
    raise RuntimeError("upstream refused the request")

try:
    fetch("local-secret-987654321")
except RuntimeError:
    logger.exception("poll crashed", source="ace")
"""

SECRETS = ("tok-registered-0123456789", "hunter2-password", "abc.def.ghi", "local-secret-987654321")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"JOURNAL_STREAM", "NO_COLOR", "FORCE_COLOR"}}
    env.update(extra)
    return env


def _run_to_file(tmp_path: Path, fmt: str, *, journal: bool) -> str:
    """Run the child with stderr on a file; with ``journal``, $JOURNAL_STREAM names that very file."""
    out = tmp_path / "stderr.log"
    with out.open("wb") as err:
        st = os.fstat(err.fileno())
        journal_stream = f"{st.st_dev}:{st.st_ino}" if journal else f"{st.st_dev}:{st.st_ino + 1}"
        subprocess.run(
            [sys.executable, "-c", CHILD, fmt],
            stderr=err,
            stdout=subprocess.DEVNULL,
            env=_env(JOURNAL_STREAM=journal_stream),
            timeout=60,
            check=True,
        )
    return out.read_text(encoding="utf-8")


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_under_journald(tmp_path: Path) -> None:
    """With $JOURNAL_STREAM naming stderr, every line is one JSON object with level, logger, timestamp and fields."""
    lines = _json_lines(_run_to_file(tmp_path, "auto", journal=True))
    polled = next(e for e in lines if e["event"] == "polled")
    assert polled["level"] == "info"
    assert polled["logger"] == "orderwatch.test"
    assert polled["source"] == "ace"
    assert polled["orders"] == 3
    assert polled["timestamp"].endswith("Z")


def test_console_when_journal_stream_is_another_file(tmp_path: Path) -> None:
    """$JOURNAL_STREAM naming some other stream (stderr redirected) means console lines, not JSON."""
    text = _run_to_file(tmp_path, "auto", journal=False)
    first = text.splitlines()[0]
    assert "polled" in first
    assert not first.lstrip().startswith("{")
    assert "\x1b[" not in text  # not a terminal: no colours


def test_stdlib_loggers_routed_through_structlog(tmp_path: Path) -> None:
    """apscheduler's stdlib records come out as the same JSON, redacted; httpx info lines are held back."""
    lines = _json_lines(_run_to_file(tmp_path, "json", journal=False))
    sched = next(e for e in lines if e.get("logger") == "apscheduler.scheduler")
    assert sched["level"] == "warning"
    assert sched["event"] == "job poll-ace saw ***"
    assert not any("below the third-party threshold" in e["event"] for e in lines)


def test_secrets_redacted_everywhere(tmp_path: Path) -> None:
    """Registered tokens, URL passwords and bearer tokens never reach the log, in JSON or console form."""
    for fmt in ("json", "console"):
        text = _run_to_file(tmp_path, fmt, journal=False)
        assert "polled" in text
        for secret in SECRETS:
            assert secret not in text, (fmt, secret)
    polled = next(e for e in _json_lines(_run_to_file(tmp_path, "json", journal=False)) if e["event"] == "polled")
    assert polled["url"] == "https://bot:***@smtp.example.com/path"
    assert polled["token"] == "***"
    assert polled["header"] == "Authorization: Bearer ***"


def test_tracebacks_without_locals(tmp_path: Path) -> None:
    """A logged exception carries its frames and message but not the values of local variables."""
    crash = next(e for e in _json_lines(_run_to_file(tmp_path, "json", journal=False)) if e["event"] == "poll crashed")
    exc = crash["exception"][0]
    assert exc["exc_type"] == "RuntimeError"
    assert exc["exc_value"] == "upstream refused the request"
    assert any(frame["name"] == "fetch" for frame in exc["frames"])
    assert all(not frame.get("locals") for frame in exc["frames"])
    assert "local-secret-987654321" not in json.dumps(crash)


def test_console_on_a_terminal(tmp_path: Path) -> None:
    """On a TTY the default format is coloured, human-readable lines."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, "auto"],
            stderr=slave,
            stdout=subprocess.DEVNULL,
            env=_env(JOURNAL_STREAM="1:1"),
        )
        os.close(slave)
        slave = -1
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    text = b"".join(chunks).decode("utf-8", "replace")
    first = text.splitlines()[0]
    assert "polled" in first
    assert "\x1b[" in first  # colours on a terminal
    assert not first.lstrip().startswith("{")
    assert "Traceback" in text or "RuntimeError" in text
    for secret in SECRETS:
        assert secret not in text

"""structlog set-up: JSON under journald (or on request), readable lines on a terminal, secrets redacted.

The stdlib loggers of the libraries go through the same processors. Those that speak HTTP (httpx, httpcore, urllib3,
requests, apprise) and the scheduler's say nothing below WARNING even at ``--log-level debug``: their debug lines
carry request URLs, and a webhook's path or a query parameter can be its secret. Tracebacks are rendered without
local variables (they may hold tokens). Every string in an event goes through ``orderwatch.config.secrets.redact``;
on a terminal, control characters in it are shown as escapes.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, Final, Literal, TextIO

from orderwatch.config.secrets import redact as scrub
from orderwatch.config.secrets import remember as register_secrets

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# never below WARNING: their debug and info lines print request URLs (webhook paths, query tokens)
QUIET: Final = (
    "httpx",
    "httpcore",
    "urllib3",
    "requests",
    "requests_oauthlib",
    "oauthlib",
    "apprise",
    "apscheduler",
    "stamina",
    "asyncio",
    "aiosmtpd",
    "mail.log",
)

__all__ = ["LEVELS", "QUIET", "printable_values", "redact", "register_secrets", "scrub", "setup", "under_journald"]


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    if isinstance(value, BaseException):
        return scrub(str(value))
    return value


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: scrub secrets from every value (after exceptions were rendered to text)."""
    for key, value in list(event.items()):
        event[key] = _scrub_value(value)
    return event


def _shown(value: Any, *, block: bool = False) -> Any:
    from orderwatch.core.printable import printable, printable_block

    if isinstance(value, str):
        return printable_block(value) if block else printable(value)
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shown(v) for v in value]
    return value


def printable_values(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor for console lines: control characters in any value shown as escapes (a traceback keeps
    its line breaks). JSON lines need none: the encoder escapes them."""
    for key, value in list(event.items()):
        event[key] = _shown(value, block=key == "exception")
    return event


def _drop_none(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in [k for k, v in event.items() if v is None]:
        del event[key]
    return event


def under_journald(stream: TextIO) -> bool:
    """True when ``stream`` is connected to the journal (systemd sets ``$JOURNAL_STREAM`` to its device:inode)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


def setup(fmt: Literal["auto", "json", "console"] = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib loggers once for this process. Logs go to stderr."""
    import structlog  # here, not at the top: reading commands that never log skip the import

    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "json" if under_journald(out) else "console"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_none,
    ]
    if fmt == "json":
        tail: list[Any] = [
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
            redact,
            structlog.processors.JSONRenderer(),
        ]
    else:
        tail = [
            structlog.processors.format_exc_info,
            redact,
            printable_values,
            structlog.dev.ConsoleRenderer(colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback),
        ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(max(LEVELS.get(level, logging.INFO), logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

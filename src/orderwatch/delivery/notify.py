"""Sending notices through apprise. The ONLY module that imports apprise (lazily: importing it costs ~300 ms).

``send(urls, notice)`` sends one notice to every URL of a channel and reports per URL (one ``Apprise`` object per
URL, so each URL's outcome and log lines are its own): a URL apprise cannot parse fails permanently, a send that
fails is temporary (retrying may help). ``check_url`` validates a URL for the config; ``mask_url`` shows one.

Secrets never leave this module: in every text it returns (reasons, problems, masked URLs) the URL's password, path
segments, non-public query values (and user/host when apprise's privacy form hides them) are replaced by ``…``, and
any URL apprise echoes in a message is cut to ``scheme://…``. Reasons are apprise's own warning and error lines for
that URL (its debug details are not captured: that would mean lowering the process-wide ``apprise`` log level).

Timeouts: a send to one URL gets ``url_timeout`` seconds (``DEFAULT_TIMEOUT``, below the daemon's grace period, so
a stop never waits long on one). apprise's own socket timeouts are fitted to it on every URL: a connection must be
made within half of it, and an answer is awaited ``READ_MARGIN`` seconds longer than it. So a send that runs out of
time was connected and has sent its request: the service may have the message, and it counts as *maybe sent*
(``UrlResult.maybe``), not as a failure to retry. A slow service is never sent the same notice twice; one slower
than ``url_timeout`` may miss it, and the log says so. (An apprise read timeout, which cannot tell a slow answer from
none, would otherwise come first: 4 s by default, and every retry a copy.)

The scheme ``console://`` prints a notice to stdout: its title, its body and a blank line.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import threading
import warnings
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote

import anyio

if TYPE_CHECKING:
    from orderwatch.core.render import Notice

MASK: Final = "…"
CONSOLE_SCHEME: Final = "console"
DEFAULT_TIMEOUT: Final = 15.0
READ_MARGIN: Final = 5.0
# query arguments whose values are not secret (all others may hold tokens, e.g. +Authorization headers)
_PUBLIC_ARGS: Final = frozenset(
    {"to", "from", "cc", "bcc", "reply", "name", "smtp", "mode", "cto", "rto", "method", "format", "overflow"}
    | {"retry", "wait", "optional", "verify", "priority", "tz", "emojis", "image", "footer"}
)
_URL_IN_TEXT: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31})://[^\s\"'<>()]*")
_SCHEME: Final = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_TOKEN_SPLIT: Final = re.compile(r"[/:@?&=#]+")
_MAX_REASON: Final = 300

_load_lock = threading.Lock()
_apprise: ModuleType | None = None


@dataclass(frozen=True, slots=True)
class UrlResult:
    """The outcome of sending to ``urls[index]``. ``permanent``: retrying cannot help. ``maybe``: no answer came in
    time after the request went out, so the service may have it (not to be sent again). ``reason``: never secret."""

    index: int
    ok: bool
    permanent: bool
    reason: str | None
    maybe: bool = False


def _print_console(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    """apprise's ``console://`` plugin: title line, body, blank line, flushed; control characters shown as escapes."""
    from orderwatch.core.printable import printable, printable_block

    lines = [printable(title)] if title else []
    sys.stdout.write("\n".join([*lines, printable_block(body), "", ""]))
    sys.stdout.flush()
    return True


def _load() -> ModuleType:
    """apprise, imported once with its plugins loaded and ``console://`` registered (warnings of its imports muted)."""
    global _apprise
    with _load_lock:
        if _apprise is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # apprise's plugins import deprecated modules (imghdr, …)
                import apprise
                import apprise.decorators

                register: Any = apprise.decorators.notify
                if CONSOLE_SCHEME not in _plugins():  # loads every plugin module
                    register(on=CONSOLE_SCHEME, name="orderwatch console")(_print_console)
            _apprise = apprise
        return _apprise


def _plugins() -> Any:
    """apprise's plugin registry (a singleton; ``scheme in _plugins()`` says whether a scheme is known)."""
    from apprise.manager_plugins import NotificationManager

    manager: Any = NotificationManager
    return manager()


# ---------------------------------------------------------------------------------------------- secrets


def _variants(part: str) -> set[str]:
    """``part`` as written, decoded and re-encoded: the forms in which it can show up in a message."""
    decoded = unquote(part)
    return {part, decoded, quote(decoded, safe="")}


def _secrets(url: str, public: str) -> frozenset[str]:
    """The parts of ``url`` that must never be shown.

    The password, every path segment and the values of query arguments not known to be public; the user and host
    too unless they appear in ``public`` (apprise's privacy form of the URL; empty when it cannot parse the URL, in
    which case a host is shown only when it looks like a host name).
    """
    shown = {unquote(t) for t in _TOKEN_SPLIT.split(public)} if public else set()
    _, sep, rest = url.partition("://")
    if not sep:
        return frozenset(_variants(url.strip()) - {""})
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hostport = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host = re.sub(r":\d+$", "", hostport)
    found = {password, *path.split("/")}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if unquote(key).strip().lower() not in _PUBLIC_ARGS:
            found.add(value)
    if unquote(user) not in shown:
        found.add(user)
    if unquote(host) not in shown and (public or "." not in host):
        found.add(host)
    secrets: set[str] = set()
    for part in found:
        secrets |= _variants(part)
    return frozenset(s for s in secrets if s)


def _redact(text: str, secrets: frozenset[str]) -> str:
    """``text`` with every secret of 3+ characters replaced by ``…`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text


def _scrub(text: str, secrets: frozenset[str]) -> str:
    """``text`` fit for a reason: URLs cut to ``scheme://…``, secrets redacted, on one line, bounded."""
    text = _redact(_URL_IN_TEXT.sub(lambda m: f"{m.group(1)}://{MASK}", text), secrets)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + MASK


def _scheme(url: str) -> str:
    """The URL's scheme (lower case), or ``?`` when it has none."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else "?"


# ---------------------------------------------------------------------------------------------- parsing


class _ThreadLogs(logging.Handler):
    """Collects apprise's warning and error messages emitted by the current thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the message when it comes from the thread that set this handler up."""
        if record.thread == self.thread:
            with contextlib.suppress(Exception):
                self.messages.append(record.getMessage())


@contextlib.contextmanager
def _capture() -> Iterator[_ThreadLogs]:
    """Collect the apprise log messages of this thread for the duration of the block."""
    handler = _ThreadLogs()
    log = logging.getLogger("apprise")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def _instantiate(url: str) -> tuple[Any, str | None]:
    """``(plugin, None)`` when apprise can use ``url``, else ``(None, problem)`` with the problem scrubbed."""
    apprise = _load()
    with _capture() as logs:
        plugin = apprise.Apprise.instantiate(url, asset=_asset())
    if plugin is not None:
        return plugin, None
    scheme = _scheme(url)
    if scheme == "?":
        problem = "not an apprise URL (expected scheme://…)"
    elif scheme not in _plugins():
        problem = f"unknown scheme '{scheme}'"
    else:
        details = "; ".join(dict.fromkeys(m for m in logs.messages if "://" not in m))
        problem = f"apprise cannot use this {scheme} URL" + (f": {details}" if details else "")
    return None, _scrub(problem, _secrets(url, ""))


@functools.cache
def _asset() -> Any:
    """The apprise asset naming orderwatch as the sender application (one, shared: apprise only reads it)."""
    apprise = _load()
    return apprise.AppriseAsset(app_id="orderwatch", app_desc="orderwatch order monitor")


def check_url(url: str) -> str | None:
    """None when apprise can use ``url`` (``console://`` included), else a problem text free of its secrets."""
    _, problem = _instantiate(url)
    return problem


def mask_url(url: str) -> str:
    """``url`` fit to show: apprise's privacy form without query and with secret parts masked; ``scheme://…``
    when apprise cannot parse it."""
    plugin, _ = _instantiate(url)
    if plugin is None:
        return f"{_scheme(url)}://{MASK}"
    private = str(plugin.url(privacy=True)).split("?", 1)[0]
    secrets = _secrets(url, private)
    scheme, _, rest = private.partition("://")
    netloc, slash, path = rest.partition("/")
    raw_path = url.partition("://")[2].partition("?")[0].partition("/")[2]
    raw_segments = {unquote(s) for s in raw_path.split("/") if s}
    segments = [MASK if seg and unquote(seg) in raw_segments else seg for seg in path.split("/")]
    return _redact(f"{scheme}://{netloc}{slash}{'/'.join(segments)}", secrets)


# ---------------------------------------------------------------------------------------------- sending


def _failure_reason(result: Any, timeout: float) -> str:
    """The best reason apprise gave for a failed result: its warnings and errors, or the timeout."""
    apprise = _load()
    if result.status == apprise.AppriseResultStatus.TIMEOUT:
        return f"no answer within {timeout:g} s"
    messages = [e.message for e in result.logs() if e.level in {"WARNING", "ERROR", "CRITICAL"}]
    return "; ".join(dict.fromkeys(messages)) or "the service reported a failure without a reason"


# apprise has no structured "cannot ever work" status: these reasons mean the URL itself is wrong (no target, a
# rejected credential, an endpoint that does not exist), so retrying cannot help.
_PERMANENT = re.compile(
    r"there are no .* to notify|no (valid )?(targets?|recipients?|channels?|topics?)|"
    r"error=(400|401|403|404|405|410)\b|\b(400|401|403|404|405|410) (bad request|unauthori[sz]ed|forbidden|not found|"
    r"method not allowed|gone)|authentication (failed|unsuccessful)|invalid (token|api key|credentials)",
    re.IGNORECASE,
)


def permanent_reason(reason: str) -> bool:
    """True when a failure reason says the URL can never work as written."""
    return _PERMANENT.search(reason) is not None


def _fit_timeouts(plugin: Any, timeout: float) -> None:
    """apprise's socket timeouts of ``plugin`` fitted to a send limit of ``timeout`` seconds (see the module)."""
    if hasattr(plugin, "socket_connect_timeout"):
        plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout), timeout / 2)
    if hasattr(plugin, "socket_read_timeout"):
        plugin.socket_read_timeout = timeout + READ_MARGIN


def _send_one(index: int, url: str, notice: Notice, timeout: float) -> UrlResult:
    """Send ``notice`` to one URL (blocking; runs in a worker thread)."""
    plugin, problem = _instantiate(url)
    if plugin is None:
        return UrlResult(index, ok=False, permanent=True, reason=problem)
    secrets = _secrets(url, str(plugin.url(privacy=True)))
    _fit_timeouts(plugin, timeout)
    apprise = _load()
    sender = apprise.Apprise(asset=_asset())
    sender.add(plugin)
    try:
        with sender.notify(
            body=notice.body, title=notice.title, body_format=apprise.NotifyFormat.TEXT, timeout=timeout
        ) as result:
            if result:
                return UrlResult(index, ok=True, permanent=False, reason=None)
            if result.status == apprise.AppriseResultStatus.TIMEOUT:
                said = f"no answer within {timeout:g} s after sending: it may have arrived, so it is not sent again"
                return UrlResult(index, ok=False, permanent=False, reason=said, maybe=True)
            reason = _failure_reason(result, timeout)
    except Exception as err:  # apprise guards its plugins; anything left is still one URL's temporary failure
        reason = f"apprise failed: {type(err).__name__}: {err}"
    reason = _scrub(reason, secrets)
    return UrlResult(index, ok=False, permanent=permanent_reason(reason), reason=reason)


async def send(
    urls: Sequence[str], notice: Notice, *, skip: Collection[int] = (), url_timeout: float = DEFAULT_TIMEOUT
) -> list[UrlResult]:
    """Send ``notice`` to every URL whose index is not in ``skip``, concurrently, each in a worker thread.

    Returns one ``UrlResult`` per URL sent to, in index order. Never raises for a URL's failure. ``url_timeout``
    (seconds) bounds each URL's whole send: apprise stops waiting and the URL is maybe sent (``UrlResult.maybe``).
    """
    await anyio.to_thread.run_sync(_load)
    results: dict[int, UrlResult] = {}

    async def one(index: int, url: str) -> None:
        results[index] = await anyio.to_thread.run_sync(_send_one, index, url, notice, url_timeout)

    async with anyio.create_task_group() as tg:
        for index, url in enumerate(urls):
            if index not in skip:
                tg.start_soon(one, index, url)
    return [results[i] for i in sorted(results)]

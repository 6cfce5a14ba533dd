"""What is secret in a configuration, and the one place that masks it in text.

``secrets_of`` says which configured values are secret: tokens (and the secret half of ``id|secret`` and
``user:secret`` tokens) and the secret parts of channel URLs. ``remember`` adds them to this process's secrets and
``redact`` masks every secret remembered so far in a text, in any form a server or proxy may quote it back
(percent-encoded, JSON-escaped, broken across lines, inside base64: see ``orderwatch.core.redact``).

Everything orderwatch prints or stores that could hold one goes through ``redact``: command output, log lines,
notification bodies, error texts kept in the database. Secrets are added, never dropped: after a reload, an error
may still quote the old token.

This module also says whether a config file holds secrets inline where others can read them.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from orderwatch.config.settings import Config
from orderwatch.core.redact import MIN_LENGTH, Redactor

_lock = threading.Lock()
_remembered: frozenset[str] = frozenset()
_redactor = Redactor(())


def remember(values: Iterable[str]) -> None:
    """Add ``values`` to the secrets ``redact`` masks (values shorter than four characters are ignored)."""
    global _remembered, _redactor
    with _lock:
        new = {v for v in values if len(v) >= MIN_LENGTH} - _remembered
        if new:
            _remembered = _remembered | new
            _redactor = Redactor(_remembered)


def remember_config(conf: Config) -> None:
    """Add every secret of ``conf`` to the secrets ``redact`` masks."""
    remember(secrets_of(conf))


def redact(text: str) -> str:
    """``text`` with every remembered secret, in any form, and anything shaped like a credential (what follows
    ``Bearer``, an ``Authorization`` header's value, a URL's password) replaced by ``***``."""
    return _redactor(text)


def _token_like(part: str) -> bool:
    return len(part) >= 16 or (len(part) >= 8 and any(ch.isdigit() for ch in part))


def _url_secrets(url: str) -> list[str]:
    """The parts of an apprise URL that can be secret: the URL itself, its password, its user for services whose user
    is a token, a host or port that is a token (``tgram://BOTID:TOKEN/…``, ``slack://TOKENA/…``), and token-like
    path segments and query values; each as written and percent-decoded."""
    from urllib.parse import parse_qsl, unquote

    scheme, sep, rest = url.partition("://")
    if not sep:
        return [url]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hostport = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, _, port = hostport.partition(":") if not hostport.startswith("[") else (hostport, "", "")
    found = [url, password]
    if user and (scheme.lower() in {"slack", "discord", "tgram", "msteams", "pover"} or _token_like(user)):
        found.append(user)
    if "." not in host and _token_like(host):
        found.append(host)
    if port and not port.isdigit():
        found.append(port)
    candidates = [*path.split("/"), *(v for _, v in parse_qsl(query))]
    found += [c for c in candidates if _token_like(c)]
    return [form for part in found if part for form in {part, unquote(part)}]


def secrets_of(conf: Config) -> list[str]:
    """Every configured value that must never be printed: tokens and the secret parts of channel URLs."""
    found: list[str] = []
    for src in conf.sources.values():
        if src.token is not None:
            token = src.token.reveal()
            found += [token, token.partition("|")[2], token.partition(":")[2]]
    for channel in conf.channels.values():
        for url in channel.urls:
            found += _url_secrets(url.reveal())
    return found


def inline_secrets(path: str | os.PathLike[str]) -> list[str]:
    """Keys of the config file at ``path`` that hold a secret written into the file itself (not ``${VAR}``, not a
    token file): source tokens, and channel URLs carrying a password or a token-like path."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    found: list[str] = []
    sources = raw.get("sources")
    for name, table in sources.items() if isinstance(sources, dict) else ():
        token = table.get("token") if isinstance(table, dict) else None
        if isinstance(token, str) and token and "${" not in token:
            found.append(f"sources.{name}.token")
    channels = raw.get("channels")
    for name, table in channels.items() if isinstance(channels, dict) else ():
        urls = table.get("urls") if isinstance(table, dict) else None
        for i, url in enumerate(urls if isinstance(urls, list) else ()):
            if isinstance(url, str) and "${" not in url and _url_holds_secret(url):
                found.append(f"channels.{name}.urls[{i}]")
    return found


def _url_holds_secret(url: str) -> bool:
    parts = urlsplit(url)
    if parts.password:
        return True
    return any(_token_like(seg) for seg in parts.path.split("/"))


def readable_by_others(path: str | os.PathLike[str]) -> bool:
    """True when the file's mode lets its group or other users read it."""
    try:
        return bool(os.stat(path).st_mode & 0o044)
    except OSError:
        return False

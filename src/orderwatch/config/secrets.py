"""What is secret in a configuration: tokens and the secret parts of channel URLs (``secrets_of``, for redaction),
and whether a config file holds secrets inline where others can read them.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from orderwatch.config.settings import Config


def _url_secrets(url: str) -> list[str]:
    """The parts of an apprise URL that can be secret: the password, and token-like path segments and values."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    found = [url]
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    if parts.username and "://" in url and parts.scheme in {"slack", "discord", "tgram", "msteams", "pover"}:
        found.append(parts.username)
    candidates = [*parts.path.split("/"), *(v for _, v in parse_qsl(parts.query))]
    found += [c for c in candidates if len(c) >= 16 or (len(c) >= 8 and any(ch.isdigit() for ch in c))]
    return found


def secrets_of(conf: Config) -> list[str]:
    """Every configured value that must never be printed: tokens and the secret parts of channel URLs."""
    found = [s.token.reveal() for s in conf.sources.values() if s.token is not None]
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
    return any(len(seg) >= 16 or (len(seg) >= 8 and any(c.isdigit() for c in seg)) for seg in parts.path.split("/"))


def readable_by_others(path: str | os.PathLike[str]) -> bool:
    """True when the file's mode lets its group or other users read it."""
    try:
        return bool(os.stat(path).st_mode & 0o044)
    except OSError:
        return False

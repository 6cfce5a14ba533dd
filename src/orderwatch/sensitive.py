"""Which configured values are secret: tokens and the secret parts of channel URLs (for log redaction).

Kept apart from the rest so that reading commands (``orderwatch changes``) need not import the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orderwatch.config import Config


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
    found = [s.token.get_secret_value() for s in conf.sources.values() if s.token is not None]
    for channel in conf.channels.values():
        for url in channel.urls:
            found += _url_secrets(url.get_secret_value())
    return found

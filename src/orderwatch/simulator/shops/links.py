"""Query strings and RFC 8288 ``Link`` headers: the URLs list answers point to for the next or previous page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlencode

Pairs = list[tuple[str, str]]


def query_pairs(query: str) -> Pairs:
    """The ``name=value`` pairs of a raw query string, in order, blanks kept."""
    return parse_qsl(query, keep_blank_values=True)


def with_params(pairs: Sequence[tuple[str, str]], updates: Mapping[str, str | None]) -> Pairs:
    """``pairs`` with each updated name set in place (first occurrence; later ones dropped) or appended; a None
    value removes the name."""
    out: Pairs = []
    done: set[str] = set()
    for name, value in pairs:
        if name not in updates:
            out.append((name, value))
        elif name not in done:
            done.add(name)
            new = updates[name]
            if new is not None:
                out.append((name, new))
    out.extend((name, value) for name, value in updates.items() if name not in done and value is not None)
    return out


def build_url(base: str, path: str, pairs: Sequence[tuple[str, str]]) -> str:
    """``base + path`` with the query ``pairs`` (form-encoded)."""
    return f"{base}{path}?{urlencode(pairs)}" if pairs else f"{base}{path}"


def link_header(links: Sequence[tuple[str, str]]) -> str:
    """An RFC 8288 ``Link`` value from ``(url, rel)`` pairs: ``<url>; rel="next", <url>; rel="prev"``."""
    return ", ".join(f'<{url}>; rel="{rel}"' for url, rel in links)

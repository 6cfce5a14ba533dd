"""The request value the adapters build and ``fetch`` sends. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP GET to make: a path under the source's base URL, query pairs (repeats allowed) and headers."""

    path: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

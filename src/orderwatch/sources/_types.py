"""The values the adapters take and build for ``fetch``: requests to send, the skip test of a sweep. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

# Asked of each ordinary list item while a page is parsed: (key, canonical state, canonical JSON) -> True when the
# caller already has that order unchanged; it is then left out of the page (counted in ``Page.skipped``), and never
# becomes an ``Order``. A full sweep's fingerprint index answers it (``FingerprintIndex.unchanged``).
Skip: TypeAlias = Callable[[str, str, bytes], bool]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP GET to make: a path under the source's base URL, query pairs (repeats allowed) and headers."""

    path: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

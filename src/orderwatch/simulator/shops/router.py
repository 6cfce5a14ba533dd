"""``ShopRouter``: several simulated APIs behind one ``SimServer``, chosen by path prefix (longest first)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from orderwatch.simulator.server import RequestHandler
from orderwatch.simulator.wire import SimResponse


class ShopRouter:
    """Sends each request to the handler whose prefix matches the path best; 404 (plain text) when none does.

    ``ShopRouter.of(woo, stripe, ...)`` uses each ``ShopSimulator``'s own prefixes; the seed ``Simulator`` can be
    added with its prefixes, e.g. ``ShopRouter([("/api/v1/orders", seed), ("/api/v2/user/orders", seed)])``."""

    def __init__(self, routes: Sequence[tuple[str, RequestHandler]]) -> None:
        prefixes = [prefix for prefix, _ in routes]
        clashes = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if clashes:
            raise ValueError(f"two handlers claim the prefixes {clashes}; give each API its own paths")
        self.routes = sorted(routes, key=lambda route: len(route[0]), reverse=True)

    @classmethod
    def of(cls, *sims: _Prefixed) -> ShopRouter:
        """A router over simulators that say which prefixes they answer (``ShopSimulator.prefixes``)."""
        return cls([(prefix, sim) for sim in sims for prefix in sim.prefixes])

    def handle_request(self, method: str, target: str, headers: Mapping[str, str], base_url: str) -> SimResponse:
        """Pass the request to the matching handler."""
        path = target.split("?", 1)[0]
        for prefix, handler in self.routes:
            if path.startswith(prefix):
                return handler.handle_request(method, target, headers, base_url)
        return SimResponse(404, b"Not Found", "text/plain")


class _Prefixed(RequestHandler, Protocol):
    """A handler that says which path prefixes it answers."""

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The path prefixes."""
        ...

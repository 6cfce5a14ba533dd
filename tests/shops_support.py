"""Clients written from each API's documentation, used by the shop-simulator tests to page through a listing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from orderwatch.simulator import SimServer
from orderwatch.simulator.shops import ShopSimulator


@contextmanager
def serve(sim: ShopSimulator) -> Iterator[httpx.Client]:
    """``sim`` on loopback and an httpx client for it that sends no credentials by default."""
    with SimServer(sim) as srv, httpx.Client(base_url=srv.url, timeout=10) as http:
        yield http


def woo_all(http: httpx.Client, sim: ShopSimulator, **params: Any) -> list[dict[str, Any]]:
    """Every WooCommerce order of a listing: the first page, then each ``Link: rel="next"`` as given."""
    resp = http.get(sim.list_path, params=params, headers=sim.auth_headers())
    rows: list[dict[str, Any]] = []
    while True:
        assert resp.status_code == 200, resp.text
        rows.extend(resp.json())
        if "next" not in resp.links:
            return rows
        resp = http.get(resp.links["next"]["url"], headers=sim.auth_headers())


def shopify_all(http: httpx.Client, sim: ShopSimulator, **params: Any) -> list[dict[str, Any]]:
    """Every Shopify order of a listing: filters on the first request, then only the ``rel="next"`` links."""
    resp = http.get(sim.list_path, params=params, headers=sim.auth_headers())
    rows: list[dict[str, Any]] = []
    while True:
        assert resp.status_code == 200, resp.text
        rows.extend(resp.json()["orders"])
        if "next" not in resp.links:
            return rows
        resp = http.get(resp.links["next"]["url"], headers=sim.auth_headers())


def stripe_all(http: httpx.Client, sim: ShopSimulator, **params: Any) -> list[dict[str, Any]]:
    """Every PaymentIntent: ``starting_after`` the last id while ``has_more`` (without it: while pages are full)."""
    rows: list[dict[str, Any]] = []
    limit = int(params.get("limit", 10))
    while True:
        page = {**params, **({"starting_after": rows[-1]["id"]} if rows else {})}
        resp = http.get(sim.list_path, params=page, headers=sim.auth_headers())
        assert resp.status_code == 200, resp.text
        body = resp.json()
        rows.extend(body["data"])
        more = body["has_more"] if "has_more" in body else len(body["data"]) == limit
        if not more:
            return rows


def paddle_all(http: httpx.Client, sim: ShopSimulator, **params: Any) -> list[dict[str, Any]]:
    """Every Paddle transaction: ``meta.pagination.next`` followed as given while ``has_more``."""
    resp = http.get(sim.list_path, params=params, headers=sim.auth_headers())
    rows: list[dict[str, Any]] = []
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        rows.extend(body["data"])
        if not body["meta"]["pagination"]["has_more"]:
            return rows
        resp = http.get(body["meta"]["pagination"]["next"], headers=sim.auth_headers())

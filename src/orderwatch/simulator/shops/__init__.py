"""Simulated shop and billing APIs for orderwatch's generic JSON sources: WooCommerce, Shopify, Stripe
PaymentIntents, Paddle transactions and a configurable JSON API, each a switchable mode of ``ShopSimulator``.

    sim = ShopSimulator("woocommerce", seed=1)         # options=WooOptions(...) switches conventions
    keys = sim.create(5)                                # in the API's first state; state="processing" to choose
    sim.move(keys[0], "processing")                     # a legal move (force=True for any known state)
    sim.act(keys[1], "trash"); sim.delete(keys[2])      # where the API can
    sim.step(20); sim.history                           # random legal changes; every change as a SimChange
    with SimServer(sim) as srv: ...                     # real HTTP on loopback (ShopRouter: several APIs, one port)

    core.py, store.py      the orders, the clock and the history every API shares
    dialect.py             the base of an API: lifecycle, random steps, faults
    simulator.py           ShopSimulator: the public API, locking, faults, statistics, request dispatch
    woocommerce.py         WooCommerce REST v3 orders (wp_rest.py: WordPress's validation; woo_orders.py: bodies)
    shopify.py             Shopify REST Admin orders (shopify_orders.py: bodies)
    stripe.py              Stripe PaymentIntents
    paddle.py              Paddle Billing transactions
    generic.py             a configurable JSON API (generic_config.py: its options)
    router.py              ShopRouter: several APIs behind one server
    keyset.py, links.py, dotted.py, timefmt.py, ids.py, people.py   cursors, URLs, paths, timestamps, ids, customers
"""

from __future__ import annotations

from orderwatch.simulator.shops.generic_config import GENERIC_TRANSITIONS, GenericOptions
from orderwatch.simulator.shops.paddle import PADDLE_TRANSITIONS, PaddleOptions
from orderwatch.simulator.shops.router import ShopRouter
from orderwatch.simulator.shops.shopify import SHOPIFY_TRANSITIONS, ShopifyOptions
from orderwatch.simulator.shops.simulator import SHOP_APIS, ShopApi, ShopOptions, ShopSimulator
from orderwatch.simulator.shops.stripe import STRIPE_TRANSITIONS, StripeOptions
from orderwatch.simulator.shops.woocommerce import WOO_STATUSES, WOO_TRANSITIONS, WooOptions

__all__ = [
    "GENERIC_TRANSITIONS",
    "PADDLE_TRANSITIONS",
    "SHOPIFY_TRANSITIONS",
    "SHOP_APIS",
    "STRIPE_TRANSITIONS",
    "WOO_STATUSES",
    "WOO_TRANSITIONS",
    "GenericOptions",
    "PaddleOptions",
    "ShopApi",
    "ShopOptions",
    "ShopRouter",
    "ShopSimulator",
    "ShopifyOptions",
    "StripeOptions",
    "WooOptions",
]

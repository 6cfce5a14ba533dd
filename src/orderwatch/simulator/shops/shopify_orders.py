"""The body of a Shopify REST Admin order as a store makes it: customer, addresses, line item, totals."""

from __future__ import annotations

import random
from typing import Any, Final

from orderwatch.simulator.shops.ids import hex_token
from orderwatch.simulator.shops.people import person

_GATEWAYS: Final = (("shopify_payments", "shopify_payments"), ("paypal", "paypal"), ("manual", "manual"))
_PRODUCTS: Final = (("Classic Tee", "29.00"), ("Canvas Tote", "18.50"), ("Wool Beanie", "24.00"), ("Mug", "12.00"))


def new_order(oid: int, number: int, state: str, rng: random.Random, shop: str, currency: str) -> dict[str, Any]:
    """Order ``oid`` (``#number``) with financial status ``state``; times are left for the caller."""
    who = person(rng)
    title, price = rng.choice(_PRODUCTS)
    qty = rng.randint(1, 3)
    total = f"{qty * float(price):.2f}"
    gateway = rng.choice(_GATEWAYS)[0]
    token = hex_token(rng, 32)
    address = {
        "first_name": who.first,
        "last_name": who.last,
        "address1": who.street,
        "city": who.city,
        "province_code": who.state,
        "zip": who.postcode,
        "country_code": who.country,
    }
    body: dict[str, Any] = {
        "id": oid,
        "admin_graphql_api_id": f"gid://shopify/Order/{oid}",
        "app_id": 580111,
        "browser_ip": f"198.51.100.{rng.randrange(1, 255)}",
        "buyer_accepts_marketing": rng.random() < 0.3,
        "cancel_reason": None,
        "cancelled_at": None,
        "cart_token": hex_token(rng, 32),
        "checkout_token": hex_token(rng, 32),
        "closed_at": None,
        "confirmation_number": "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9)),
        "confirmed": True,
        "contact_email": who.email,
        "created_at": "",
        "currency": currency,
        "current_total_price": total,
        "email": who.email,
        "financial_status": state,
        "fulfillment_status": None,
        "name": f"#{number}",
        "note": None,
        "number": number - 1000,
        "order_number": number,
        "order_status_url": f"https://{shop}.myshopify.com/{oid}/orders/{token}/authenticate",
        "payment_gateway_names": [gateway],
        "phone": None,
        "presentment_currency": currency,
        "processed_at": "",
        "source_name": "web",
        "subtotal_price": total,
        "tags": "",
        "taxes_included": False,
        "test": False,
        "token": token,
        "total_discounts": "0.00",
        "total_line_items_price": total,
        "total_outstanding": total,
        "total_price": total,
        "total_tax": "0.00",
        "updated_at": "",
        "billing_address": address,
        "shipping_address": address,
        "customer": {
            "id": 7_100_000_000_000 + rng.randrange(10**6),
            "email": who.email,
            "first_name": who.first,
            "last_name": who.last,
        },
        "line_items": [{"id": oid + 1, "title": title, "quantity": qty, "price": price, "sku": None}],
        "fulfillments": [],
        "refunds": [],
    }
    return body

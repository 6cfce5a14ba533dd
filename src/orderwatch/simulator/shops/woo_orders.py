"""The body of a WooCommerce REST v3 order as a shop makes it: customer, line items, totals, gateway."""

from __future__ import annotations

import random
from typing import Any, Final

from orderwatch.simulator.shops.people import person

_GATEWAYS: Final = (
    ("bacs", "Direct bank transfer"),
    ("cheque", "Check payments"),
    ("cod", "Cash on delivery"),
    ("stripe", "Credit Card (Stripe)"),
    ("ppcp-gateway", "PayPal"),
)
_PRODUCTS: Final = (
    (93, "Beanie", 18.0, "woo-beanie"),
    (94, "Hoodie with Logo", 45.0, "woo-hoodie-with-logo"),
    (99, "T-Shirt", 18.0, "woo-tshirt"),
    (101, "Sunglasses", 90.0, "woo-sunglasses"),
    (103, "Cap", 16.0, "woo-cap"),
    (106, "Album", 15.0, "woo-album"),
)
_SYMBOLS: Final = {"EUR": "€", "USD": "$", "GBP": "£"}


def new_order(oid: int, state: str, rng: random.Random, currency: str) -> dict[str, Any]:
    """A new order with id ``oid`` in ``state``; times and status-dependent fields are left for the caller."""
    who = person(rng)
    method, title = rng.choice(_GATEWAYS)
    picks = rng.sample(_PRODUCTS, rng.randint(1, 3))
    lines = [_line(oid * 10 + n, product, rng.randint(1, 3)) for n, product in enumerate(picks)]
    subtotal = sum(float(line["total"]) for line in lines)
    address = {
        "first_name": who.first,
        "last_name": who.last,
        "company": "",
        "address_1": who.street,
        "address_2": "",
        "city": who.city,
        "state": who.state,
        "postcode": who.postcode,
        "country": who.country,
    }
    shipping_line = {
        "id": oid * 10 + 9,
        "method_title": "Flat rate",
        "method_id": "flat_rate",
        "instance_id": "1",
        "total": "5.00",
        "total_tax": "0.00",
        "taxes": [],
        "meta_data": [],
    }
    body: dict[str, Any] = {
        "id": oid,
        "parent_id": 0,
        "status": state,
        "currency": currency,
        "version": "9.4.2",
        "prices_include_tax": False,
        "date_created": "",
        "date_modified": "",
        "discount_total": "0.00",
        "discount_tax": "0.00",
        "shipping_total": "5.00",
        "shipping_tax": "0.00",
        "cart_tax": "0.00",
        "total": f"{subtotal + 5:.2f}",
        "total_tax": "0.00",
        "customer_id": rng.choice((0, rng.randrange(2, 60))),
        "order_key": f"wc_order_{rng.getrandbits(52):013x}",
        "billing": {**address, "email": who.email, "phone": who.phone},
        "shipping": {**address, "phone": ""},
        "payment_method": method,
        "payment_method_title": title,
        "transaction_id": "",
        "customer_ip_address": f"203.0.113.{rng.randrange(1, 255)}",
        "customer_user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "created_via": "checkout",
        "customer_note": "",
        "date_completed": None,
        "date_paid": None,
        "cart_hash": f"{rng.getrandbits(128):032x}",
        "number": str(oid),
        "meta_data": [],
        "line_items": lines,
        "tax_lines": [],
        "shipping_lines": [shipping_line],
        "fee_lines": [],
        "coupon_lines": [],
        "refunds": [],
        "payment_url": "",
        "is_editable": False,
        "needs_payment": False,
        "needs_processing": True,
        "date_created_gmt": "",
        "date_modified_gmt": "",
        "date_completed_gmt": None,
        "date_paid_gmt": None,
        "currency_symbol": _SYMBOLS.get(currency, currency),
    }
    return body


def _line(item_id: int, product: tuple[int, str, float, str], qty: int) -> dict[str, Any]:
    pid, name, price, sku = product
    money = f"{qty * price:.2f}"
    return {
        "id": item_id,
        "name": name,
        "product_id": pid,
        "variation_id": 0,
        "quantity": qty,
        "tax_class": "",
        "subtotal": money,
        "subtotal_tax": "0.00",
        "total": money,
        "total_tax": "0.00",
        "taxes": [],
        "meta_data": [],
        "sku": sku,
        "price": price,
        "image": {"id": 0, "src": ""},
        "parent_name": None,
    }

"""Presets of ``kind = "json"``: for each known API, the keys of a ``[sources.NAME]`` table that describe it, exactly
as a user would write them in TOML. The config lays a source's own keys over its preset's (tables such as
``paging``, ``states`` and ``params`` key by key), so any of these can be overridden.

Adding a preset is one more table here (and a simulator mode that speaks the API, to test it against): there is
no code per preset. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

# Which keys of a preset are tables merged key by key with the source's own (others are replaced whole).
MERGED: Final = ("paging", "filters", "states", "params", "display")

PRESETS: Final[Mapping[str, Mapping[str, Any]]] = {
    # WooCommerce REST API v3: a bare array, page/per_page (at most 100), X-WP-Total and X-WP-TotalPages.
    "woocommerce": {
        "auth": "basic",  # token = "consumer_key:consumer_secret"
        "path": "/wp-json/wc/v3/orders",
        "detail_path": "/wp-json/wc/v3/orders/{key}",
        # status=any (the default) leaves trashed orders out, yet the detail endpoint still has them: list every
        # status, so moving an order to the trash is a transition, not an order that is gone yet still there
        "params": {"status": "pending,processing,on-hold,completed,cancelled,refunded,failed,checkout-draft,trash"},
        "items": "",
        "key": "id",
        "state": "status",
        "created": "date_created_gmt",
        "updated": "date_modified_gmt",
        "states": {
            "pending": "Pending",
            "processing": "Paid",
            "on-hold": "Pending",
            "completed": "Finished",
            "cancelled": "Cancelled",
            "refunded": "Refunded",
            "failed": "Failed",
            "checkout-draft": "Pending",
            "trash": "Cancelled",
        },
        "open_states": ["Pending", "Paid"],
        "paging": {
            "style": "page",
            "size_param": "per_page",
            "page_param": "page",
            "total": "header:X-WP-Total",
            "total_pages": "header:X-WP-TotalPages",
            "sort": {"orderby": "date", "order": "desc"},
            "max_size": 100,
        },
        "filters": {"state_param": "status", "updated_since_param": "modified_after"},
        "display": {
            "Amount": "total currency",
            "Customer": "billing.first_name billing.last_name billing.email",
            "Payment": "payment_method_title",
        },
    },
    # Shopify REST Admin orders: {"orders": [...]}, limit (at most 250), Link rel="next" with page_info cursors.
    "shopify": {
        "auth": "header:X-Shopify-Access-Token",
        "path": "/admin/api/2025-07/orders.json",
        "detail_path": "/admin/api/2025-07/orders/{key}.json",
        "detail_items": "order",
        "params": {"status": "any"},
        "items": "orders",
        "key": "id",
        "state": "financial_status",
        "created": "created_at",
        "updated": "updated_at",
        "states": {
            "pending": "Pending",
            "authorized": "Pending",
            "partially_paid": "Pending",
            "paid": "Paid",
            "partially_refunded": "Refunded",
            "refunded": "Refunded",
            "voided": "Cancelled",
            "expired": "Expired",
        },
        "open_states": ["Pending", "Paid"],
        "paging": {"style": "link", "size_param": "limit", "max_size": 250},
        "filters": {"state_param": "financial_status", "updated_since_param": "updated_at_min"},
        "display": {
            "Amount": "total_price currency",
            "Customer": "customer.first_name customer.last_name email",
            "Payment": "payment_gateway_names",
        },
    },
    # Stripe PaymentIntents: {"object": "list", "data", "has_more"}, limit (at most 100), starting_after = last id.
    "stripe-payment-intents": {
        "auth": "bearer",
        "path": "/v1/payment_intents",
        "detail_path": "/v1/payment_intents/{key}",
        "detail_items": "",
        "items": "data",
        "key": "id",
        "state": "status",
        "created": "created",
        "states": {
            "requires_payment_method": "Pending",
            "requires_confirmation": "Pending",
            "requires_action": "Pending",
            "processing": "Pending",
            "requires_capture": "Pending",
            "succeeded": "Paid",
            "canceled": "Cancelled",
        },
        "open_states": ["Pending"],
        "paging": {
            "style": "cursor",
            "size_param": "limit",
            "cursor_param": "starting_after",
            "cursor": "last_key",
            "has_more": "has_more",
            "max_size": 100,
        },
        "display": {
            "Amount": "amount:minor currency:upper",
            "Customer": "customer receipt_email",
            "Payment": "payment_method_types",
        },
    },
    # Paddle Billing transactions: {"data", "meta": {"pagination": {"next", "has_more"}}}, next is a URL.
    "paddle-transactions": {
        "auth": "bearer",
        "path": "/transactions",
        "detail_path": "/transactions/{key}",
        "detail_items": "data",
        "items": "data",
        "key": "id",
        "state": "status",
        "created": "created_at",
        "updated": "updated_at",
        "states": {
            "draft": "Pending",
            "ready": "Pending",
            "billed": "Pending",
            "past_due": "Pending",
            "paid": "Paid",
            "completed": "Finished",
            "canceled": "Cancelled",
        },
        "open_states": ["Pending", "Paid"],
        "paging": {
            "style": "cursor",
            "size_param": "per_page",
            "cursor": "meta.pagination.next",
            "has_more": "meta.pagination.has_more",
            "sort": {"order_by": "created_at[DESC]"},
            "max_size": 30,
        },
        "filters": {"state_param": "status", "updated_since_param": "updated_at[GT]"},
        "display": {
            "Amount": "details.totals.grand_total:minor currency_code",
            "Customer": "customer_id",
            "Payment": "payments.0.method_details.type collection_mode",
        },
    },
}


def with_preset(table: Mapping[str, Any], preset: Mapping[str, Any]) -> dict[str, Any]:
    """``table`` (a source's own keys) laid over ``preset``: its keys win; ``MERGED`` tables merge key by key."""
    merged: dict[str, Any] = {**preset, **table}
    for key in MERGED:
        below, above = preset.get(key), table.get(key)
        if isinstance(below, Mapping) and isinstance(above, Mapping):
            merged[key] = {**below, **above}
    return merged

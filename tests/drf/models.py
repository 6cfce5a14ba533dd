"""The order table of the Ace API as a Django model (stored in the server's SQLite file)."""

from __future__ import annotations

import uuid

from django.db import models


class Order(models.Model):  # type: ignore[misc]
    """One Ace order, with the fields the API documents."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    user_id = models.UUIDField(default=uuid.uuid4)
    application_id = models.UUIDField(default=uuid.uuid4)
    package_id = models.UUIDField(default=uuid.uuid4)
    amount = models.IntegerField(default=500)
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    discount = models.FloatField(default=1.0)
    pay_way = models.CharField(max_length=32, default="Stripe")
    pay_id = models.CharField(max_length=64, blank=True, default="")
    pay_url = models.CharField(max_length=200, blank=True, default="")
    state = models.CharField(max_length=16, default="Pending")
    remaining_amount = models.IntegerField(default=0)
    applications = models.JSONField(default=list)
    packages = models.JSONField(default=list)
    tags = models.JSONField(null=True, default=None)
    metadata = models.JSONField(null=True, default=None)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        app_label = "drf"
        db_table = "orders"
        ordering = ("created_at",)  # oldest first: a client that sends no ordering gets the wrong end first

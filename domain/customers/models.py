"""Customers: the people orders belong to and notifications go to (the recipient id of a
customer's notifications is the customer's id)."""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Customer(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Blank allowed: a customer who gave no address still gets in-app notifications (the email
    # delivery is then `skipped`, "the recipient has no email address").
    email = models.EmailField(max_length=254, blank=True, default="")
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(
        default=True, help_text="An inactive customer is sent no notifications.")
    last_active_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            # The nightly `customers.deactivate_inactive` bulk operation (issue 14) looks for
            # active customers whose last activity is older than a cutoff. A partial index
            # holds the active customers only, so it shrinks as they are deactivated and the
            # nightly scan reads only candidates (inactive rows are never looked at again).
            models.Index(fields=["last_active_at"], condition=Q(is_active=True),
                         name="customer_active_last_seen"),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name

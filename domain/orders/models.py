"""Orders: what a customer bought, and where its shipment is."""

import uuid

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone


class OrderStatus(models.TextChoices):
    PLACED = "placed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class Order(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(max_length=32, unique=True,
                              help_text="What the customer sees, e.g. ORD-1001.")
    # PROTECT: an order is a record of a sale; deleting a customer must not erase it.
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT,
                                 related_name="orders")
    status = models.CharField(max_length=16, choices=OrderStatus.choices,
                              default=OrderStatus.PLACED)
    carrier = models.CharField(max_length=64, blank=True, default="")
    tracking_number = models.CharField(max_length=100, blank=True, default="")
    tracking_url = models.URLField(max_length=2000, blank=True, default="")
    shipped_at = models.DateTimeField(null=True, blank=True)
    total = models.DecimalField(max_digits=12, decimal_places=2,
                                validators=[MinValueValidator(0)])
    currency = models.CharField(max_length=3, validators=[RegexValidator(
        "^[A-Z]{3}$", "An ISO 4217 code: three capital letters.")])
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "-created_at"],
                                name="order_customer_created")]

    def __str__(self) -> str:
        return self.number

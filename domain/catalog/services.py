from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from domain.access.models import ApiKey
from domain.catalog.models import Product, ProductStatus
from domain.common.errors import NotFound
from domain.events.services import event_publish

UPDATABLE_FIELDS = ("name", "price", "stock", "status", "category")


@transaction.atomic
def product_update(*, product_id, changes: dict[str, Any], api_key: ApiKey | None = None,
                   correlation_id: str = "") -> Product:
    """Write the product and publish `product.updated` in the same transaction.

    The event is the outbox: if this commits, the cache invalidation will run (reliability
    contract #1); if it rolls back, neither happened. A change to nothing publishes nothing.
    """
    product = Product.objects.select_for_update().filter(pk=product_id).first()
    if product is None:
        raise NotFound("Product not found.")
    previous_category = product.category
    changed = [f for f in UPDATABLE_FIELDS if f in changes and getattr(product, f) != changes[f]]
    if not changed:
        return product
    for field in changed:
        setattr(product, field, changes[field])
    product.updated_at = timezone.now()
    product.save(update_fields=[*changed, "updated_at"])
    event_publish(
        event_type="product.updated",
        payload={
            "product_id": str(product.id),
            "sku": product.sku,
            "category": product.category,
            "previous_category": previous_category if previous_category != product.category
            else None,
            "changed": changed,
        },
        api_key=api_key,
        correlation_id=correlation_id,
    )
    return product


DEMO_CATALOG = [
    ("SKU-1001", "Espresso beans 1kg", "24.90", 120, "coffee"),
    ("SKU-1002", "Filter coffee 500g", "11.50", 80, "coffee"),
    ("SKU-1003", "Decaf beans 1kg", "22.00", 35, "coffee"),
    ("SKU-2001", "Ceramic mug", "9.90", 300, "kitchen"),
    ("SKU-2002", "Pour-over dripper", "29.00", 42, "kitchen"),
    ("SKU-2003", "Burr grinder", "149.00", 12, "kitchen"),
    ("SKU-3001", "Gift card 25", "25.00", 1000, "gifts"),
]


def demo_catalog_load() -> int:
    """Create the demo products that are missing (by sku); existing rows are left as they are."""
    existing = set(Product.objects.filter(sku__in=[r[0] for r in DEMO_CATALOG])
                   .values_list("sku", flat=True))
    new = [Product(sku=sku, name=name, price=price, stock=stock, category=category,
                   status=ProductStatus.ACTIVE)
           for sku, name, price, stock, category in DEMO_CATALOG if sku not in existing]
    Product.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)

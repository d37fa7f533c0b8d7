"""Catalog reads, served through the Redis cache. Returned values are plain JSON-ready dicts."""

from __future__ import annotations

import hashlib

from django.conf import settings

from domain.catalog.cache_keys import PRODUCT_DETAILS_NAMESPACE, listing_namespace, product_key
from domain.catalog.models import Product
from domain.common.cache import (
    cache_get,
    cache_set,
    generation_and_value,
    namespaced_key_or_none,
)
from domain.common.errors import NotFound


def product_to_dict(product: Product) -> dict:
    return {
        "id": str(product.id),
        "sku": product.sku,
        "name": product.name,
        "price": str(product.price),
        "stock": product.stock,
        "status": product.status,
        "category": product.category,
        "updated_at": product.updated_at.isoformat(),
    }


def product_get_cached(*, product_id) -> tuple[dict, bool]:
    """The product as a dict, and whether it came from the cache (the database answers when
    the cache is down).

    A copy is served only if it was read under the current generation of the product-details
    namespace, which a bulk run bumps (dropping a million keys one by one is not an option).
    The generation is read before the database: a copy read before a bump is stored under
    the old generation, so it is never served after it."""
    key = product_key(product_id)
    generation, cached = generation_and_value(PRODUCT_DETAILS_NAMESPACE, key)
    if generation is not None and isinstance(cached, dict) \
            and cached.get("generation") == generation:
        return cached["product"], True
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise NotFound("Product not found.")
    data = product_to_dict(product)
    if generation is not None:
        cache_set(key, {"generation": generation, "product": data},
                  settings.CATALOG_CACHE_TIMEOUT)
    return data, False


def product_list_cached(*, category: str | None, after_sku: str | None,
                        limit: int) -> tuple[dict, bool]:
    """One page of products ordered by sku (keyset pagination), cached under the listing's
    namespace so one version bump drops every page of it."""
    page_id = hashlib.sha256(f"{after_sku or ''}|{limit}".encode()).hexdigest()[:16]
    key = namespaced_key_or_none(listing_namespace(category), f"page:{page_id}")
    cached = cache_get(key) if key else None
    if cached is not None:
        return cached, True
    products = Product.objects.order_by("sku")
    if category:
        products = products.filter(category=category)
    if after_sku:
        products = products.filter(sku__gt=after_sku)
    rows = list(products[: limit + 1])
    page = {
        "results": [product_to_dict(p) for p in rows[:limit]],
        "next_after": rows[limit - 1].sku if len(rows) > limit else None,
    }
    if key:
        cache_set(key, page, settings.CATALOG_CACHE_TIMEOUT)
    return page, False

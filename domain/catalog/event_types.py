from domain.catalog.cache_keys import (
    ALL_PRODUCTS_NAMESPACE,
    bulk_invalidation_namespaces,
    category_namespace,
    product_key,
)
from domain.events.registry import EventType, Handler, register_event_type
from domain.jobs.kinds import CACHE_INVALIDATION


def _invalidation_params(payload: dict) -> dict:
    categories = {payload["category"], payload.get("previous_category") or payload["category"]}
    return {
        "keys": [product_key(payload["product_id"])],
        "namespaces": [ALL_PRODUCTS_NAMESPACE, *sorted(category_namespace(c) for c in categories)],
    }


PRODUCT_UPDATED = register_event_type(
    EventType(
        name="product.updated",
        description="A product changed; its cached copy and its category listings are dropped.",
        schema={
            "type": "object",
            "properties": {
                "product_id": {"type": "string", "format": "uuid", "minLength": 1},
                "sku": {"type": "string", "minLength": 1, "maxLength": 64},
                "category": {"type": "string", "minLength": 1, "maxLength": 64},
                "previous_category": {"type": ["string", "null"], "maxLength": 64},
                "changed": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["product_id", "category"],
        },
        handlers=(Handler(name="catalog.invalidate_product_cache", kind=CACHE_INVALIDATION.name,
                          params=_invalidation_params),),
        example={"product_id": "0b5d3c8e-2f1a-4c2e-9d8b-6a1f0e4c7b21", "sku": "SKU-1001",
                 "category": "coffee", "previous_category": None, "changed": ["price"]},
    )
)


BULK_UPDATED = register_event_type(
    EventType(
        name="catalog.bulk_updated",
        description="A bulk run changed products (catalog.reprice, catalog.set_status, "
        "catalog.set_prices); every product's cached copy and the touched categories' "
        "listings are dropped. Published by the server when the run succeeds.",
        schema={
            "type": "object",
            "properties": {
                "run_id": {"type": "string", "format": "uuid"},
                "operation": {"type": "string", "minLength": 1, "maxLength": 100},
                "categories": {"type": "array", "maxItems": 998,
                               "items": {"type": "string", "minLength": 1, "maxLength": 64}},
                "rows_changed": {"type": "integer", "minimum": 0},
                "categories_truncated": {"type": "boolean"},
            },
            "required": ["run_id", "operation", "categories", "rows_changed"],
        },
        handlers=(Handler(name="catalog.invalidate_bulk_cache", kind=CACHE_INVALIDATION.name,
                          params=lambda p: {"namespaces": bulk_invalidation_namespaces(
                              p["categories"])}),),
        example={"run_id": "3f2c1e5a-8b7d-4c6e-9f0a-1b2c3d4e5f60",
                 "operation": "catalog.reprice", "categories": ["coffee"],
                 "rows_changed": 3},
        publishable=False,
    )
)

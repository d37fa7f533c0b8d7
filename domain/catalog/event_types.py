from domain.catalog.cache_keys import ALL_PRODUCTS_NAMESPACE, category_namespace, product_key
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

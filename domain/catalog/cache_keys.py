"""Where catalog reads live in the cache. Writers and the invalidation handler share these."""

ALL_PRODUCTS_NAMESPACE = "catalog:products"
# Every product's cached copy carries the generation of this namespace it was read under
# (selectors.product_get_cached); a bulk run bumps it, and no copy from before is served.
PRODUCT_DETAILS_NAMESPACE = "catalog:product-details"


def product_key(product_id) -> str:
    return f"catalog:product:{product_id}"


def category_namespace(category: str) -> str:
    return f"catalog:products:category:{category}"


def listing_namespace(category: str | None) -> str:
    return category_namespace(category) if category else ALL_PRODUCTS_NAMESPACE


def bulk_invalidation_namespaces(categories) -> list[str]:
    """What a bulk change to products in these categories makes stale: every product's
    cached copy, the listing of all products, and the categories' listings."""
    return [ALL_PRODUCTS_NAMESPACE, PRODUCT_DETAILS_NAMESPACE,
            *sorted(category_namespace(c) for c in set(categories))]

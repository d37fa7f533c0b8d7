"""Where catalog reads live in the cache. Writers and the invalidation handler share these."""

ALL_PRODUCTS_NAMESPACE = "catalog:products"


def product_key(product_id) -> str:
    return f"catalog:product:{product_id}"


def category_namespace(category: str) -> str:
    return f"catalog:products:category:{category}"


def listing_namespace(category: str | None) -> str:
    return category_namespace(category) if category else ALL_PRODUCTS_NAMESPACE

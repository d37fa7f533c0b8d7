"""Management command: load_demo_catalog."""

from __future__ import annotations

import pytest

from domain.catalog.models import Product
from domain.catalog.services import DEMO_CATALOG
from tests.conftest import run_command
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

def test_load_demo_catalog_is_idempotent():
    # given an empty catalog
    assert Product.objects.count() == 0

    # when the demo catalog is loaded twice
    first, _ = run_command("load_demo_catalog")
    skus_after_first = dict(Product.objects.values_list("sku", "pk"))
    second, _ = run_command("load_demo_catalog")

    # then the products are created once, and each run says how many it made
    total = len(DEMO_CATALOG)
    assert first.strip() == f"demo catalog: {total} created, {total} total"
    assert second.strip() == f"demo catalog: 0 created, {total} total"
    assert Product.objects.count() == total
    assert dict(Product.objects.values_list("sku", "pk")) == skus_after_first
    assert set(skus_after_first) == {row[0] for row in DEMO_CATALOG}


def test_load_demo_catalog_leaves_existing_products_alone():
    # given a demo SKU that already exists with local changes, and an unrelated product
    ProductFactory(sku="SKU-1001", name="Local espresso", price="1.00", category="local")
    ProductFactory(sku="OTHER-1")

    # when the demo catalog is loaded
    out, _ = run_command("load_demo_catalog")

    # then only the missing demo products are created, and the existing row keeps its values
    total = len(DEMO_CATALOG)
    assert out.strip() == f"demo catalog: {total - 1} created, {total} total"
    assert Product.objects.count() == total + 1
    existing = Product.objects.get(sku="SKU-1001")
    assert (existing.name, str(existing.price), existing.category) == (
        "Local espresso", "1.00", "local")

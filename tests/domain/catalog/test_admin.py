"""The catalog admin: products listed and searched; an edit there invalidates like the API (it
publishes product.updated)."""

import pytest
from django.urls import reverse

from domain.events.models import Event
from domain.jobs.models import Job
from tests.conftest import assert_changelist_loads
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_the_product_list_loads_with_a_search(operator):
    ProductFactory()
    assert_changelist_loads(operator, "catalog/product")


def test_product_edit_in_admin_publishes_product_updated(operator):
    product = ProductFactory(price="10.00", category="coffee")
    url = reverse("admin:catalog_product_change", args=[product.pk])
    response = operator.post(url, {"name": product.name, "price": "11.00", "stock": product.stock,
                                   "status": product.status, "category": "tea"})
    assert response.status_code == 302, response.content.decode()[:2000]
    product.refresh_from_db()
    assert str(product.price) == "11.00" and product.category == "tea"
    event = Event.objects.get(type="product.updated")
    assert set(event.payload["changed"]) == {"price", "category"}
    job = Job.objects.get(event=event)
    assert "catalog:products:category:coffee" in job.params["namespaces"]
    assert "catalog:products:category:tea" in job.params["namespaces"]

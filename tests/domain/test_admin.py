"""The admin pages load for an operator, and a product edit there invalidates like the API."""

import pytest
from django.urls import reverse

from domain.events.models import Event, Job
from tests.factories import EventFactory, JobFactory, ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.login(username="ops", password="pw")
    return client


@pytest.mark.parametrize("model", ["events/event", "events/job", "events/jobattempt",
                                   "common/apikey", "catalog/product",
                                   "django_celery_beat/periodictask"])
def test_changelists_load_with_filters(operator, model):
    EventFactory()
    JobFactory(status="dead")
    app_label, model_name = model.split("/")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    assert operator.get(url).status_code == 200
    assert operator.get(url + "?q=x").status_code == 200


def test_job_change_page_shows_its_attempts(operator):
    job = JobFactory()
    response = operator.get(reverse("admin:events_job_change", args=[job.pk]))
    assert response.status_code == 200
    assert str(job.pk) in response.content.decode()


def test_admin_requires_login(client):
    response = client.get(reverse("admin:events_job_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


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

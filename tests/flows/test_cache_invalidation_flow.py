"""The walking skeleton, end to end: API → outbox → Redis → real worker → real cache."""

import pytest
from django.urls import reverse

from domain.catalog.cache_keys import product_key
from domain.events.models import Event, EventStatus
from domain.jobs.models import Job, JobStatus
from tests.conftest import wait_for
from tests.factories import ProductFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def _job_done(job_id):
    job = Job.objects.get(pk=job_id)
    return job if job.status in (JobStatus.SUCCEEDED, JobStatus.DEAD) else None


def test_patch_invalidates_cached_product_through_a_real_worker(celery_worker_thread,
                                                                 client_all):
    # given a product whose detail and category listing are cached
    product = ProductFactory(price="10.00", category="coffee")
    detail = reverse("product-detail", args=[product.pk])
    listing = reverse("product-list") + "?category=coffee"
    assert client_all.get(detail)["X-Cache"] == "miss"
    first = client_all.get(detail)
    assert first["X-Cache"] == "hit" and first.json()["price"] == "10.00"
    client_all.get(listing)
    assert client_all.get(listing)["X-Cache"] == "hit"

    # when the price changes through the API
    response = client_all.patch(detail, {"price": "12.50"}, format="json")
    assert response.status_code == 200, response.content
    event = Event.objects.get(type="product.updated")
    job = event.jobs.get()

    # then the invalidation job runs once on the worker and succeeds
    done = wait_for(lambda: _job_done(job.pk), message="the cache invalidation job")
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 1
    assert done.kind == "cache_invalidation"
    assert product_key(product.pk) in done.result["keys_deleted"]
    assert done.attempt_log.count() == 1
    wait_for(lambda: Event.objects.get(pk=event.pk).status == EventStatus.COMPLETED,
             message="the event to complete")

    # and the next reads miss the cache and return the new value
    after = client_all.get(detail)
    assert after["X-Cache"] == "miss"
    assert after.json()["price"] == "12.50"
    page = client_all.get(listing)
    assert page["X-Cache"] == "miss"
    assert [p["price"] for p in page.json()["results"] if p["id"] == str(product.pk)] == ["12.50"]

    # and the job is visible through the API with its one attempt
    job_body = client_all.get(reverse("job-detail", args=[job.pk])).json()
    assert job_body["status"] == "succeeded" and job_body["attempts"] == 1
    attempts = client_all.get(reverse("job-attempts", args=[job.pk])).json()
    assert [a["outcome"] for a in attempts] == ["succeeded"]


def test_direct_invalidation_job_drops_keys(celery_worker_thread, client_all):
    from django.core.cache import cache

    # given two cached keys
    cache.set("demo:a", 1)
    cache.set("demo:b", 2)

    # when a client triggers an invalidation job directly
    response = client_all.post(reverse("job-list"), {
        "kind": "cache_invalidation", "params": {"keys": ["demo:a", "demo:b"]}}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    # then the worker deletes them
    done = wait_for(lambda: _job_done(job_id), message="the invalidation job")
    assert done.status == JobStatus.SUCCEEDED
    assert cache.get("demo:a") is None and cache.get("demo:b") is None


def test_published_event_fans_out_and_completes(celery_worker_thread, client_all):
    response = client_all.post(reverse("event-publish"),
                               {"type": "demo.ping", "payload": {"message": "hi"}}, format="json")
    assert response.status_code == 202
    event_id = response.json()["id"]
    wait_for(lambda: Event.objects.get(pk=event_id).status == EventStatus.COMPLETED,
             message="the event to complete")
    body = client_all.get(reverse("event-detail", args=[event_id])).json()
    assert body["status"] == "completed"
    assert [j["status"] for j in body["jobs"]] == ["succeeded"]

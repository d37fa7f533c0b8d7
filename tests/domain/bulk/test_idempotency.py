"""Idempotency-Key on POST /api/v1/bulk-operations: a retried start answers the first run
instead of applying the operation again."""

from __future__ import annotations

import pytest
from django.urls import reverse

from domain.bulk.models import BulkRun
from domain.jobs.models import Job
from tests.conftest import assert_error, simultaneously
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db
URL = "bulk-run-list"
REPRICE = {"operation": "catalog.reprice", "args": {"category": "tea", "percent": 10}}


@pytest.fixture
def bulk_client(make_client):
    return make_client(["bulk:write"])


def test_a_retry_with_the_same_key_answers_the_first_run(bulk_client):
    # given a run started with a key
    ProductFactory(category="tea")
    first = bulk_client.post(reverse(URL), REPRICE, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 202, first.content

    # when the same request is sent again, even after the run has ended
    BulkRun.objects.update(status="succeeded", target=None)
    again = bulk_client.post(reverse(URL), REPRICE, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    # then it answers the first run as it is now, marked as a replay, and starts nothing
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.json()["status"] == "succeeded"
    assert BulkRun.objects.count() == 1 and Job.objects.filter(kind="bulk_run").count() == 1


def test_the_same_key_with_another_request_is_409(bulk_client):
    ProductFactory(category="tea")
    bulk_client.post(reverse(URL), REPRICE, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    other = {**REPRICE, "args": {"category": "tea", "percent": 11}}
    response = bulk_client.post(reverse(URL), other, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    body = assert_error(response, 409, "idempotency_key_reused")
    assert body["details"]["run"] == str(BulkRun.objects.get().pk)


def test_a_csv_replay_compares_the_body(bulk_client):
    # given a CSV run started with a key
    product = ProductFactory(price="1.00")
    url = reverse(URL) + "?operation=catalog.set_prices"
    body = f"sku,price\n{product.sku},2.00\n"
    first = bulk_client.post(url, body, content_type="text/csv", HTTP_IDEMPOTENCY_KEY="k-3")
    assert first.status_code == 202, first.content
    BulkRun.objects.update(status="cancelled", target=None)

    # then the same body is a replay, and another body is refused
    again = bulk_client.post(url, body, content_type="text/csv", HTTP_IDEMPOTENCY_KEY="k-3")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = bulk_client.post(url, f"sku,price\n{product.sku},3.00\n", content_type="text/csv",
                             HTTP_IDEMPOTENCY_KEY="k-3")
    assert_error(other, 409, "idempotency_key_reused")
    assert BulkRun.objects.count() == 1


def test_keys_belong_to_their_api_key(make_client):
    ProductFactory(category="tea")
    one, two = make_client(["bulk:write"], name="one"), make_client(["bulk:write"], name="two")
    assert one.post(reverse(URL), {**REPRICE, "dry_run": True}, format="json",
                    HTTP_IDEMPOTENCY_KEY="shared").status_code == 202
    assert two.post(reverse(URL), {**REPRICE, "dry_run": True}, format="json",
                    HTTP_IDEMPOTENCY_KEY="shared").status_code == 202
    assert BulkRun.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_requests_with_one_key_at_the_same_instant_start_one_run(bulk_client):
    # given products, and the same keyed request sent from several threads at once
    ProductFactory(category="tea")

    def send():
        return bulk_client.post(reverse(URL), REPRICE, format="json",
                                HTTP_IDEMPOTENCY_KEY="k-race").status_code

    statuses = simultaneously(4, send)

    # then one run was started, and every other answer is its replay (not a 409 busy)
    assert sorted(statuses) == [200, 200, 200, 202]
    assert BulkRun.objects.count() == 1


def test_a_keyed_failed_run_resumed_while_another_holds_its_rows_is_409(bulk_client):
    # given a run started with a key that failed, and another run on the same rows since
    ProductFactory(category="tea")
    first = bulk_client.post(reverse(URL), REPRICE, format="json", HTTP_IDEMPOTENCY_KEY="k-9")
    assert first.status_code == 202, first.content
    BulkRun.objects.update(status="failed")
    holder = bulk_client.post(reverse(URL), {**REPRICE, "args": {"category": "tea",
                                                                 "percent": 5}}, format="json")
    assert holder.status_code == 202, holder.content

    # when the failed run is resumed
    response = bulk_client.post(reverse("bulk-run-resume", args=[first.json()["id"]]))

    # then it is refused naming the holder (its own key is no replay of anything)
    body = assert_error(response, 409, "bulk_target_busy")
    assert body["details"]["run"] == holder.json()["id"]
    assert BulkRun.objects.get(pk=first.json()["id"]).status == "failed"

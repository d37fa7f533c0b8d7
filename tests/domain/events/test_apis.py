"""POST/GET /api/v1/events: publishing, validation, limits, idempotency, batches, correlation."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from domain.access.models import Scopes
from domain.catalog.cache_keys import ALL_PRODUCTS_NAMESPACE, category_namespace, product_key
from domain.catalog.event_types import PRODUCT_UPDATED
from domain.common.correlation import MESSAGE_HEADER
from domain.events.event_types import DEMO_PING
from domain.events.models import Event, EventStatus
from domain.jobs.models import Job, JobStatus
from tests.conftest import assert_error, bearer, message_args, queued_messages, simultaneously
from tests.factories import EventFactory, JobFactory, ProductFactory

PUBLISH = "event-publish"
BATCH = "event-batch-publish"
PING = {"type": "demo.ping", "payload": {"message": "hi"}}
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def assert_nothing_written() -> None:
    assert Event.objects.count() == 0
    assert Job.objects.count() == 0


def product_payload(product) -> dict:
    return {"product_id": str(product.pk), "sku": product.sku, "category": product.category}


def publish(client: APIClient, body, **extra):
    return client.post(reverse(PUBLISH), body, format="json", **extra)


# --- Publishing ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_publish_demo_ping_is_202_and_stores_event_and_job(client_all):
    # given a client allowed to publish
    before = timezone.now()

    # when it publishes a demo.ping
    response = publish(client_all, PING)

    # then it gets 202 with the event, its jobs and where to poll
    assert response.status_code == 202, response.content
    body = response.json()
    assert {"id", "type", "status", "jobs", "created_at", "url"} <= set(body)
    assert body["type"] == "demo.ping"
    assert body["payload"] == {"message": "hi"}
    assert body["url"] == f"http://testserver/api/v1/events/{body['id']}"
    assert len(body["jobs"]) == 1
    assert body["jobs"][0]["kind"] == "noop"
    assert body["jobs"][0]["handler"] == "demo.noop"
    assert body["jobs"][0]["status"] == "queued"
    assert body["jobs"][0]["url"] == f"http://testserver/api/v1/jobs/{body['jobs'][0]['id']}"

    # and the event and one job per handler are in the database, owned by the key
    event = Event.objects.get()
    assert str(event.pk) == body["id"]
    assert event.api_key_id == client_all.api_key.pk
    assert event.payload == {"message": "hi"}
    assert before <= event.created_at <= timezone.now()
    jobs = list(event.jobs.all())
    assert len(jobs) == len(DEMO_PING.handlers) == 1
    assert str(jobs[0].pk) == body["jobs"][0]["id"]
    assert jobs[0].status == JobStatus.QUEUED
    assert jobs[0].api_key_id == client_all.api_key.pk
    assert jobs[0].max_attempts == body["jobs"][0]["max_attempts"] > 0


@pytest.mark.django_db
def test_publish_demo_ping_dispatches_to_events_queue_after_commit(
        client_all, broker, django_capture_on_commit_callbacks):
    # given a client allowed to publish, and empty queues
    assert queued_messages(broker, "events") == []

    # when it publishes a demo.ping and the transaction commits
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = publish(client_all, PING)

    # then one callback sent the job to the "events" queue as conveyor.demo.noop
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    job = Job.objects.get()
    messages = queued_messages(broker, "events")
    assert len(messages) == 1
    assert messages[0]["headers"]["id"] == str(job.pk)
    assert messages[0]["headers"]["task"] == "conveyor.demo.noop"
    assert messages[0]["properties"]["delivery_info"]["routing_key"] == "events"
    assert message_args(messages[0]) == [str(job.pk)]
    assert queued_messages(broker, "cache") == []

    # and the event is dispatched and the job marked as handed over
    event = Event.objects.get()
    assert event.status == EventStatus.DISPATCHED
    assert event.dispatched_at is not None
    assert job.enqueued_at is not None
    assert job.status == JobStatus.QUEUED


@pytest.mark.django_db
def test_publish_without_commit_leaves_event_pending_and_queue_empty(client_all, broker):
    # given a test transaction that never commits (on_commit callbacks never run)
    # when an event is published
    response = publish(client_all, PING)

    # then it is stored but still pending, and nothing reached the broker
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert Event.objects.get().status == EventStatus.PENDING
    assert Job.objects.get().enqueued_at is None
    assert queued_messages(broker, "events") == []


@pytest.mark.django_db(transaction=True)
def test_publish_in_autocommit_returns_dispatched_event(client_all, broker):
    # given real commits (as in production)
    # when an event is published
    response = publish(client_all, PING)

    # then the 202 already shows what was done after commit
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "dispatched"
    assert body["dispatched_at"] is not None
    assert Event.objects.get().status == EventStatus.DISPATCHED
    assert [m["headers"]["id"] for m in queued_messages(broker, "events")] == [
        body["jobs"][0]["id"]]


@pytest.mark.django_db
def test_publish_product_updated_goes_to_cache_queue_with_invalidation_params(
        client_all, broker, django_capture_on_commit_callbacks):
    # given a product and a valid product.updated payload for it
    product = ProductFactory(category="coffee")
    payload = {**product_payload(product), "previous_category": "tea", "changed": ["category"]}

    # when it is published and the transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        response = publish(client_all, {"type": "product.updated", "payload": payload})

    # then one cache_invalidation job exists with params derived from the payload
    assert response.status_code == 202, response.content
    event = Event.objects.get()
    assert event.type == "product.updated"
    assert event.status == EventStatus.DISPATCHED
    job = event.jobs.get()
    assert len(PRODUCT_UPDATED.handlers) == 1
    assert job.kind == "cache_invalidation"
    assert job.handler == "catalog.invalidate_product_cache"
    assert job.params == {
        "keys": [product_key(product.pk)],
        "namespaces": [ALL_PRODUCTS_NAMESPACE, category_namespace("coffee"),
                       category_namespace("tea")],
    }

    # and its message sits in the "cache" queue as conveyor.cache.invalidate
    messages = queued_messages(broker, "cache")
    assert len(messages) == 1
    assert messages[0]["headers"]["id"] == str(job.pk)
    assert messages[0]["headers"]["task"] == "conveyor.cache.invalidate"
    assert messages[0]["properties"]["delivery_info"]["routing_key"] == "cache"
    assert queued_messages(broker, "events") == []


@pytest.mark.django_db
def test_occurred_at_is_honoured_when_given(client_all):
    # given an explicit occurred_at in the past
    body = {**PING, "occurred_at": "2024-01-02T03:04:05Z"}

    # when it is published
    response = publish(client_all, body)

    # then the event keeps it
    assert response.status_code == 202, response.content
    assert response.json()["occurred_at"] == "2024-01-02T03:04:05Z"
    assert Event.objects.get().occurred_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.django_db
def test_occurred_at_defaults_to_now_when_absent(client_all):
    # given no occurred_at
    before = timezone.now()

    # when an event is published
    response = publish(client_all, PING)

    # then it defaults to the time of publishing
    assert response.status_code == 202
    event = Event.objects.get()
    assert before <= event.occurred_at <= timezone.now()


@pytest.mark.django_db
def test_invalid_occurred_at_is_422(client_all):
    # given an occurred_at that is not a date-time
    # when it is published
    response = publish(client_all, {**PING, "occurred_at": "yesterday"})

    # then it is a validation error on that field, and nothing is stored
    error = assert_error(response, 422, "validation_failed")
    assert "occurred_at" in error["details"]
    assert_nothing_written()


# --- Malformed and oversized bodies ----------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("raw", [b'{"type": "demo.ping", "payload": ', b"not json", b"{'a': 1}"])
def test_malformed_json_is_400(client_all, raw):
    # given a body that is not JSON
    # when it is posted as JSON
    response = client_all.post(reverse(PUBLISH), raw, content_type="application/json")

    # then it is a 400 malformed_json and nothing is stored
    error = assert_error(response, 400, "malformed_json")
    assert "Malformed JSON" in error["message"]
    assert_nothing_written()


@pytest.mark.django_db
def test_body_over_the_limit_is_413(client_all, settings):
    # given a small body limit and a body larger than it
    settings.API_MAX_BODY_BYTES = 200
    body = {"type": "demo.ping", "payload": {"message": "x" * 300}}
    assert len(json.dumps(body)) > 200

    # when it is posted
    response = publish(client_all, body)

    # then it is refused before any work, and nothing is stored
    error = assert_error(response, 413, "request_too_large")
    assert "200 bytes" in error["message"]
    assert_nothing_written()


@pytest.mark.django_db
def test_body_at_the_limit_is_accepted(client_all, settings):
    # given a body of exactly the limit
    raw = json.dumps({"type": "demo.ping", "payload": {"message": ""}}).encode()
    raw = raw.replace(b'""', b'"' + b"x" * (200 - len(raw)) + b'"')
    assert len(raw) == 200
    settings.API_MAX_BODY_BYTES = 200

    # when it is posted
    response = client_all.post(reverse(PUBLISH), raw, content_type="application/json")

    # then it is accepted
    assert response.status_code == 202, response.content
    assert Event.objects.count() == 1


# --- Validation --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_unknown_event_type_is_422_with_known_types(client_all):
    # given a type nobody registered
    # when it is published
    response = publish(client_all, {"type": "order.exploded", "payload": {}})

    # then the error names it and lists the known types
    error = assert_error(response, 422, "unknown_event_type")
    assert error["details"]["type"] == "order.exploded"
    assert {"demo.ping", "product.updated"} <= set(error["details"]["known"])
    assert_nothing_written()


@pytest.mark.django_db
def test_a_padded_event_type_is_no_type(client_all):
    # when a registered type is sent with a space (before: trimmed and published, though the
    # schema's enum names the type exactly)
    response = publish(client_all, {"type": "demo.ping ", "payload": {}})

    # then it is an unknown type, and nothing is written
    assert assert_error(response, 422, "unknown_event_type")["details"]["type"] == "demo.ping "
    assert_nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize(("event_type", "payload", "path"), [
    ("demo.ping", {"message": 42}, "message"),
    ("demo.ping", ["not", "an", "object"], "/"),
    ("product.updated", {"category": "coffee"}, "/"),
    ("product.updated", {"product_id": "x", "category": ""}, "category"),
])
def test_payload_failing_its_schema_is_422_invalid_payload(client_all, event_type, payload,
                                                           path):
    # given a payload that breaks the type's JSON schema
    # when it is published
    response = publish(client_all, {"type": event_type, "payload": payload})

    # then details.payload lists each violation with its path
    error = assert_error(response, 422, "invalid_payload")
    assert event_type in error["message"]
    violations = error["details"]["payload"]
    assert isinstance(violations, list) and violations
    assert all(set(v) == {"path", "message"} for v in violations)
    assert path in [v["path"] for v in violations]
    assert_nothing_written()


@pytest.mark.django_db
def test_product_updated_missing_product_id_names_the_field(client_all):
    # given a product.updated payload without product_id
    # when it is published
    response = publish(client_all, {"type": "product.updated", "payload": {"category": "tea"}})

    # then the violation says product_id is required
    error = assert_error(response, 422, "invalid_payload")
    assert error["details"]["payload"] == [
        {"path": "/", "message": "'product_id' is a required property"}]
    assert_nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), [
    ({"payload": {}}, "type"),
    ({"type": "demo.ping"}, "payload"),
    ({"type": "demo.ping", "payload": None}, "payload"),
    ({"type": "x" * 101, "payload": {}}, "type"),
])
def test_missing_or_bad_fields_are_422_validation_failed(client_all, body, field):
    # given a body missing a required field (or with a bad one)
    # when it is published
    response = publish(client_all, body)

    # then the field is named in the details
    error = assert_error(response, 422, "validation_failed")
    assert field in error["details"]
    assert isinstance(error["details"][field], list)
    assert_nothing_written()


@pytest.mark.django_db
def test_json_array_body_is_422(client_all):
    # given a well-formed JSON body that is not an object
    # when it is published
    response = publish(client_all, [PING])

    # then it is a validation error, not a crash
    assert_error(response, 422, "validation_failed")
    assert_nothing_written()


# --- Reading -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_event_types_lists_schemas_and_handlers(client_all):
    # given the registered types
    # when a publisher lists them
    response = client_all.get(reverse("event-type-list"))

    # then demo.ping and product.updated are there with their schema and handlers
    assert response.status_code == 200
    by_name = {t["name"]: t for t in response.json()}
    assert {"demo.ping", "product.updated"} <= set(by_name)
    assert by_name["demo.ping"]["schema"] == DEMO_PING.schema
    assert by_name["demo.ping"]["handlers"] == [{"name": "demo.noop", "kind": "noop"}]
    assert by_name["demo.ping"]["description"]
    assert by_name["product.updated"]["schema"] == PRODUCT_UPDATED.schema
    assert by_name["product.updated"]["schema"]["required"] == ["product_id", "category"]
    assert by_name["product.updated"]["handlers"] == [
        {"name": "catalog.invalidate_product_cache", "kind": "cache_invalidation"}]
    assert_nothing_written()


@pytest.mark.django_db
def test_get_event_returns_it_with_its_jobs(client_all):
    # given an event the key published
    created = publish(client_all, PING).json()

    # when it is read back
    response = client_all.get(reverse("event-detail", args=[created["id"]]))

    # then it has the same id, payload and jobs as the database
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created["id"]
    assert body["payload"] == {"message": "hi"}
    event = Event.objects.get(pk=created["id"])
    assert [j["id"] for j in body["jobs"]] == [str(j.pk) for j in event.jobs.all()]
    assert body["jobs"][0]["event"] == created["id"]
    assert body["status"] == event.status


@pytest.mark.django_db
def test_get_event_shows_each_jobs_own_state(client_all):
    # given an event of this key with two jobs in different states
    event = EventFactory(api_key=client_all.api_key)
    done = JobFactory(event=event, handler="a", status=JobStatus.SUCCEEDED, attempts=1,
                      api_key=client_all.api_key)
    waiting = JobFactory(event=event, handler="b", api_key=client_all.api_key)

    # when the event is read
    response = client_all.get(reverse("event-detail", args=[event.pk]))

    # then both jobs are listed with their own state
    assert response.status_code == 200
    jobs = {j["id"]: j for j in response.json()["jobs"]}
    assert jobs[str(done.pk)]["status"] == "succeeded"
    assert jobs[str(done.pk)]["attempts"] == 1
    assert jobs[str(waiting.pk)]["status"] == "queued"
    assert Job.objects.filter(event=event).count() == 2


@pytest.mark.django_db
def test_get_unknown_event_is_404_json(client_all):
    # given an id that does not exist
    missing = "00000000-0000-4000-8000-000000000000"

    # when it is read
    response = client_all.get(reverse("event-detail", args=[missing]))

    # then it is a JSON 404
    error = assert_error(response, 404, "not_found")
    assert error["message"] == "Event not found."
    assert not Event.objects.filter(pk=missing).exists()


@pytest.mark.django_db
def test_get_event_with_a_non_uuid_id_is_404_json(client_all):
    # given a path that is not an event id
    # when it is requested
    response = client_all.get("/api/v1/events/not-a-uuid")

    # then the URL resolver's 404 is JSON too
    assert_error(response, 404, "not_found")
    assert_nothing_written()


# --- Idempotency -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_same_idempotency_key_and_body_replays_the_first_event(
        client_all, broker, django_capture_on_commit_callbacks):
    # given an event published with an Idempotency-Key
    with django_capture_on_commit_callbacks(execute=True):
        first = publish(client_all, PING, HTTP_IDEMPOTENCY_KEY="order-42")

    # when the same request is sent again
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        second = publish(client_all, PING, HTTP_IDEMPOTENCY_KEY="order-42")

    # then the first is 202, the replay 200 with the same event and jobs, and a header saying so
    assert first.status_code == 202, first.content
    assert not first.has_header("Idempotent-Replayed")
    assert second.status_code == 200, second.content
    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert [j["id"] for j in second.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]

    # and exactly one event and one job exist, sent to the broker once
    event = Event.objects.get()
    assert event.idempotency_key == "order-42"
    assert event.api_key_id == client_all.api_key.pk
    assert Job.objects.count() == 1
    assert callbacks == []
    assert len(queued_messages(broker, "events")) == 1


@pytest.mark.django_db
def test_replay_with_the_same_occurred_at_is_a_replay(client_all):
    # given an event published with a key and an explicit occurred_at
    body = {**PING, "occurred_at": "2024-05-06T07:08:09Z"}
    first = publish(client_all, body, HTTP_IDEMPOTENCY_KEY="k")

    # when the same body is sent again
    second = publish(client_all, body, HTTP_IDEMPOTENCY_KEY="k")

    # then it is replayed
    assert (first.status_code, second.status_code) == (202, 200)
    assert Event.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("changed", [
    {"type": "demo.ping", "payload": {"message": "bye"}},
    {"type": "demo.ping", "payload": {"message": "hi"}, "occurred_at": "2024-01-01T00:00:00Z"},
])
def test_same_idempotency_key_with_a_different_body_is_409(client_all, changed):
    # given an event published with an Idempotency-Key
    first = publish(client_all, PING, HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == 202

    # when a different body is sent with the same key
    response = publish(client_all, changed, HTTP_IDEMPOTENCY_KEY="order-42")

    # then it conflicts, points at the first event, and nothing new is stored
    error = assert_error(response, 409, "idempotency_key_reused")
    assert error["details"] == {"event": first.json()["id"]}
    assert Event.objects.count() == 1
    assert Event.objects.get().payload == {"message": "hi"}
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_idempotency_keys_are_per_api_key(make_client):
    # given two API keys
    alice = make_client([Scopes.EVENTS_PUBLISH], name="alice")
    bob = make_client([Scopes.EVENTS_PUBLISH], name="bob")

    # when both publish the same body with the same Idempotency-Key
    first = publish(alice, PING, HTTP_IDEMPOTENCY_KEY="shared")
    second = publish(bob, PING, HTTP_IDEMPOTENCY_KEY="shared")

    # then each gets its own new event
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]
    assert Event.objects.count() == 2
    assert Event.objects.get(pk=first.json()["id"]).api_key_id == alice.api_key.pk
    assert Event.objects.get(pk=second.json()["id"]).api_key_id == bob.api_key.pk
    assert Job.objects.count() == 2


@pytest.mark.django_db
def test_without_idempotency_key_every_request_is_a_new_event(client_all):
    # given no Idempotency-Key
    # when the same body is published twice
    first = publish(client_all, PING)
    second = publish(client_all, PING)

    # then two events exist
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]
    assert Event.objects.filter(idempotency_key__isnull=True).count() == 2


@pytest.mark.django_db
def test_idempotency_key_longer_than_255_is_422(client_all):
    # given an Idempotency-Key of 256 characters
    # when it is used
    response = publish(client_all, PING, HTTP_IDEMPOTENCY_KEY="k" * 256)

    # then it is refused, and nothing is stored
    error = assert_error(response, 422, "invalid_idempotency_key")
    assert "255" in error["message"]
    assert_nothing_written()


@pytest.mark.django_db
def test_idempotency_key_of_exactly_255_is_accepted(client_all):
    # given an Idempotency-Key of 255 characters
    # when it is used
    response = publish(client_all, PING, HTTP_IDEMPOTENCY_KEY="k" * 255)

    # then it is stored with the event
    assert response.status_code == 202, response.content
    assert Event.objects.get().idempotency_key == "k" * 255


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_the_same_idempotency_key_make_one_event(make_client, broker):
    # given 8 clients sharing one API key, ready to send the same request at once
    owner = make_client([Scopes.EVENTS_PUBLISH], name="racer")
    threads_count = 8

    # when they all post simultaneously
    responses = simultaneously(threads_count, lambda: publish(
        bearer(owner.raw_key), PING, HTTP_IDEMPOTENCY_KEY="race-1"))

    # then every request answered with the same event, exactly one of them as its creator
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 202}, [r.content for r in responses]
    assert statuses.count(202) == 1
    assert len({r.json()["id"] for r in responses}) == 1
    assert all(r["Idempotent-Replayed"] == "true" for r in responses if r.status_code == 200)

    # and the database holds one event with one job, which was sent to the broker once
    event = Event.objects.get()
    assert str(event.pk) == responses[0].json()["id"]
    assert event.idempotency_key == "race-1"
    assert Job.objects.count() == 1
    assert [m["headers"]["id"] for m in queued_messages(broker, "events")] == [
        str(Job.objects.get().pk)]


# --- Batches -------------------------------------------------------------------------------------

def batch(client: APIClient, events, **extra):
    return client.post(reverse(BATCH), {"events": events}, format="json", **extra)


@pytest.mark.django_db
def test_batch_of_three_valid_events_is_202_and_stores_all(
        client_all, broker, django_capture_on_commit_callbacks):
    # given three valid events, one of them a product.updated
    product = ProductFactory()
    events = [
        {"type": "demo.ping", "payload": {"message": "one"}},
        {"type": "product.updated", "payload": product_payload(product)},
        {"type": "demo.ping", "payload": {"message": "three"},
         "occurred_at": "2024-01-01T00:00:00Z"},
    ]

    # when they are published as one batch and the transaction commits
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = batch(client_all, events)

    # then the response lists the three events in order, each with its job
    assert response.status_code == 202, response.content
    body = response.json()
    assert [e["type"] for e in body["events"]] == ["demo.ping", "product.updated", "demo.ping"]
    assert all(len(e["jobs"]) == 1 for e in body["events"])
    assert body["events"][2]["occurred_at"] == "2024-01-01T00:00:00Z"

    # and the database holds three events and three jobs, sent in one go after commit
    assert Event.objects.count() == 3
    assert Job.objects.count() == 3
    assert set(Event.objects.values_list("status", flat=True)) == {EventStatus.DISPATCHED}
    assert set(Event.objects.values_list("api_key", flat=True)) == {client_all.api_key.pk}
    assert {str(pk) for pk in Event.objects.values_list("pk", flat=True)} == {
        e["id"] for e in body["events"]}
    assert len(callbacks) == 1
    # the two noop jobs travel in one message (micro-batching), the cache job alone
    [noop_message] = queued_messages(broker, "events")
    [job_ids] = message_args(noop_message)
    assert job_ids == [body["events"][0]["jobs"][0]["id"], body["events"][2]["jobs"][0]["id"]]
    cache_messages = queued_messages(broker, "cache")
    assert [m["headers"]["id"] for m in cache_messages] == [body["events"][1]["jobs"][0]["id"]]


@pytest.mark.django_db
def test_batch_with_invalid_events_is_422_by_index_and_stores_nothing(client_all, broker):
    # given a batch where events 1 and 3 are invalid in different ways
    events = [
        {"type": "demo.ping", "payload": {"message": "ok"}},
        {"type": "demo.ping", "payload": {"message": 7}},
        {"type": "demo.ping", "payload": {}},
        {"type": "order.exploded", "payload": {}},
    ]

    # when the batch is published
    response = batch(client_all, events)

    # then the errors are keyed by index, with each event's own code
    error = assert_error(response, 422, "validation_failed")
    by_index = error["details"]["events"]
    assert set(by_index) == {"1", "3"}
    assert by_index["1"]["code"] == "invalid_payload"
    assert [v["path"] for v in by_index["1"]["payload"]] == ["message"]
    assert by_index["3"]["code"] == "unknown_event_type"
    assert by_index["3"]["type"] == "order.exploded"
    assert "nothing was stored" in error["message"]

    # and nothing was written or sent
    assert_nothing_written()
    assert queued_messages(broker, "events") == []


@pytest.mark.django_db
def test_batch_item_missing_type_is_422_by_index(client_all):
    # given a batch whose second item has no type
    events = [PING, {"payload": {}}]

    # when it is published
    response = batch(client_all, events)

    # then the serializer error is keyed by that index, and nothing is stored
    error = assert_error(response, 422, "validation_failed")
    assert error["details"]["events"] == {"1": {"type": ["This field is required."]}}
    assert_nothing_written()


@pytest.mark.django_db
def test_batch_larger_than_the_event_limit_is_422_batch_too_large(client_all, settings):
    # given a batch limit of 2 and a batch of 3
    settings.API_MAX_BATCH_EVENTS = 2

    # when it is published
    response = batch(client_all, [PING, PING, PING])

    # then it is refused with the limit, and nothing is stored
    error = assert_error(response, 422, "batch_too_large")
    assert error["details"] == {"limit": 2, "received": 3}
    assert_nothing_written()


@pytest.mark.django_db
def test_batch_at_the_event_limit_is_accepted(client_all, settings):
    # given a batch limit of 2 and a batch of 2
    settings.API_MAX_BATCH_EVENTS = 2

    # when it is published
    response = batch(client_all, [PING, PING])

    # then both are stored
    assert response.status_code == 202, response.content
    assert Event.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{"events": []}, {}, {"events": "nope"}, []])
def test_empty_or_missing_batch_is_422(client_all, body):
    # given an empty, missing or mistyped event list
    # when it is published
    response = client_all.post(reverse(BATCH), body, format="json")

    # then it is a validation error, and nothing is stored
    error = assert_error(response, 422, "validation_failed")
    assert error["details"]
    assert_nothing_written()


@pytest.mark.django_db
def test_batch_body_over_the_batch_limit_is_413(client_all, settings):
    # given a body one byte over the batch body limit (the limit a batch view uses)
    limit = settings.API_MAX_BATCH_BODY_BYTES
    prefix = b'{"events": [{"type": "demo.ping", "payload": {"message": "'
    suffix = b'"}}]}'
    raw = prefix + b"x" * (limit + 1 - len(prefix) - len(suffix)) + suffix
    assert len(raw) == limit + 1

    # when it is posted
    response = client_all.post(reverse(BATCH), raw, content_type="application/json")

    # then it is refused and nothing is stored
    error = assert_error(response, 413, "request_too_large")
    assert str(limit) in error["message"]
    assert_nothing_written()


@pytest.mark.django_db
def test_batch_body_limit_follows_the_setting(client_all, settings):
    # given a small batch body limit and a batch body larger than it
    settings.API_MAX_BATCH_BODY_BYTES = 200
    events = [{"type": "demo.ping", "payload": {"message": "x" * 100}}] * 3

    # when it is posted
    response = batch(client_all, events)

    # then it is refused with 413 and nothing is stored
    assert_error(response, 413, "request_too_large")
    assert_nothing_written()


@pytest.mark.django_db
def test_batch_has_its_own_body_limit_above_the_single_event_one(client_all, settings):
    # given a small single-request limit and a batch body above it
    settings.API_MAX_BODY_BYTES = 200
    events = [{"type": "demo.ping", "payload": {"message": "x" * 100}}] * 3
    assert len(json.dumps({"events": events})) > 200

    # when the batch is posted
    response = batch(client_all, events)

    # then it is accepted (the batch endpoint has its own, larger limit)
    assert response.status_code == 202, response.content
    assert Event.objects.count() == 3


# --- Correlation ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_correlation_id_is_echoed_and_stored_on_event_and_jobs(
        client_all, broker, django_capture_on_commit_callbacks):
    # given a caller's correlation id
    # when it publishes with it
    with django_capture_on_commit_callbacks(execute=True):
        response = publish(client_all, PING, HTTP_X_CORRELATION_ID="abc-123")

    # then the id is echoed, stored on the event and its jobs, and carried by the message
    assert response.status_code == 202
    assert response["X-Correlation-ID"] == "abc-123"
    assert response.json()["correlation_id"] == "abc-123"
    event = Event.objects.get()
    assert event.correlation_id == "abc-123"
    assert list(event.jobs.values_list("correlation_id", flat=True)) == ["abc-123"]
    assert [m["headers"][MESSAGE_HEADER] for m in queued_messages(broker, "events")] == [
        "abc-123"]


@pytest.mark.django_db
def test_correlation_id_is_stored_on_every_event_of_a_batch(client_all):
    # given a caller's correlation id
    # when it publishes a batch with it
    response = batch(client_all, [PING, PING], HTTP_X_CORRELATION_ID="batch-7")

    # then every event and job carries it
    assert response.status_code == 202
    assert response["X-Correlation-ID"] == "batch-7"
    assert set(Event.objects.values_list("correlation_id", flat=True)) == {"batch-7"}
    assert set(Job.objects.values_list("correlation_id", flat=True)) == {"batch-7"}


@pytest.mark.django_db
@pytest.mark.parametrize("supplied", ["abc 123", "a" * 200, "a" * 65, "abc/123", "ab\tc",
                                      "<script>"])
def test_invalid_correlation_id_is_replaced_by_a_generated_one(client_all, supplied):
    # given a correlation id that is too long or not plain
    # when it is sent
    response = publish(client_all, PING, HTTP_X_CORRELATION_ID=supplied)

    # then a generated id replaces it, in the response and on the rows
    assert response.status_code == 202
    generated = response["X-Correlation-ID"]
    assert generated != supplied
    assert GENERATED_ID.match(generated)
    event = Event.objects.get()
    assert event.correlation_id == generated
    assert list(event.jobs.values_list("correlation_id", flat=True)) == [generated]


@pytest.mark.django_db
def test_correlation_id_of_64_plain_characters_is_kept(client_all):
    # given the longest acceptable id
    supplied = "A1._:-" + "z" * 58
    assert len(supplied) == 64

    # when it is sent
    response = publish(client_all, PING, HTTP_X_CORRELATION_ID=supplied)

    # then it is kept
    assert response["X-Correlation-ID"] == supplied
    assert Event.objects.get().correlation_id == supplied


@pytest.mark.django_db
def test_missing_correlation_id_is_generated_and_also_set_on_errors(client_all):
    # given no correlation id
    # when a request succeeds and another fails
    ok = publish(client_all, PING)
    failed = publish(client_all, {"type": "nope", "payload": {}})

    # then both carry a generated id, distinct per request, and the event stores its own
    assert GENERATED_ID.match(ok["X-Correlation-ID"])
    assert GENERATED_ID.match(failed["X-Correlation-ID"])
    assert ok["X-Correlation-ID"] != failed["X-Correlation-ID"]
    assert failed.status_code == 422
    assert Event.objects.get().correlation_id == ok["X-Correlation-ID"]

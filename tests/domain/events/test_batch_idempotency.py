"""POST /api/v1/events/batch with an Idempotency-Key: the whole batch is one idempotent
request, with the single publish's contract (tests/domain/events/test_apis.py, Idempotency),
and single and batch publishes share one key space per API key."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from domain.access.models import Scopes
from domain.events.models import Event
from domain.jobs.models import Job, JobStatus
from tests.conftest import assert_error, bearer, message_args, queued_messages, simultaneously

BATCH = "event-batch-publish"
PUBLISH = "event-publish"
PING = {"type": "demo.ping", "payload": {"message": "hi"}}


def pings(n: int, word: str = "ping") -> list[dict]:
    return [{"type": "demo.ping", "payload": {"message": f"{word} {i}"}} for i in range(n)]


def batch(client: APIClient, events: list[dict], key: str | None = None, **extra):
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(reverse(BATCH), {"events": events}, format="json", **extra)


def publish(client: APIClient, body: dict, key: str):
    return client.post(reverse(PUBLISH), body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def ids(response) -> list[str]:
    return [event["id"] for event in response.json()["events"]]


@pytest.mark.django_db
def test_same_key_and_body_replays_the_first_batch_in_its_order(
        client_all, broker, django_capture_on_commit_callbacks):
    # given a batch of five published with an Idempotency-Key
    events = pings(5)
    with django_capture_on_commit_callbacks(execute=True):
        first = batch(client_all, events, key="batch-42")
    assert first.status_code == 202, first.content
    assert not first.has_header("Idempotent-Replayed")

    # when the same request is sent again
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        second = batch(client_all, events, key="batch-42")

    # then it is 200 with a header saying so, and lists the same events and jobs in the same
    # order (the events all share one created_at: the order is the request's, not the table's)
    assert second.status_code == 200, second.content
    assert second["Idempotent-Replayed"] == "true"
    assert ids(second) == ids(first)
    assert [e["payload"]["message"] for e in second.json()["events"]] == [
        f"ping {i}" for i in range(5)]
    assert [[j["id"] for j in e["jobs"]] for e in second.json()["events"]] == [
        [j["id"] for j in e["jobs"]] for e in first.json()["events"]]

    # and exactly five events and five jobs exist, sent to the broker once
    assert Event.objects.count() == 5
    assert Job.objects.count() == 5
    assert callbacks == []
    [message] = queued_messages(broker, "events")
    assert len(message_args(message)[0]) == 5


@pytest.mark.django_db
def test_a_replay_shows_the_events_as_they_are_now(client_all):
    # given a batch published with a key, one of whose jobs has since succeeded
    first = batch(client_all, pings(2), key="k")
    done = first.json()["events"][1]["jobs"][0]["id"]
    Job.objects.filter(pk=done).update(status=JobStatus.SUCCEEDED)

    # when the batch is sent again
    second = batch(client_all, pings(2), key="k")

    # then the replay shows the job's status now, not the one of the first answer
    assert second.status_code == 200, second.content
    assert [e["jobs"][0]["status"] for e in second.json()["events"]] == ["queued", "succeeded"]


@pytest.mark.django_db
@pytest.mark.parametrize("changed", [
    pytest.param(pings(3, "other"), id="other-payloads"),
    pytest.param(pings(2), id="fewer-events"),
    pytest.param(list(reversed(pings(3))), id="other-order"),
    pytest.param([*pings(2), {**pings(3)[2], "occurred_at": "2024-01-01T00:00:00Z"}],
                 id="other-occurred-at"),
])
def test_same_key_with_a_different_batch_is_409(client_all, changed):
    # given a batch of three published with a key
    first = batch(client_all, pings(3), key="batch-42")
    assert first.status_code == 202

    # when a different batch is sent with the same key
    response = batch(client_all, changed, key="batch-42")

    # then it conflicts, points at the first batch's first event, and nothing new is stored
    error = assert_error(response, 409, "idempotency_key_reused")
    assert error["details"] == {"event": ids(first)[0]}
    assert Event.objects.count() == 3
    assert Job.objects.count() == 3


@pytest.mark.django_db
def test_batch_keys_are_per_api_key(make_client):
    # given two API keys
    alice = make_client([Scopes.EVENTS_PUBLISH], name="alice")
    bob = make_client([Scopes.EVENTS_PUBLISH], name="bob")

    # when both publish the same batch with the same key
    first = batch(alice, pings(2), key="shared")
    second = batch(bob, pings(2), key="shared")

    # then each stored its own batch
    assert (first.status_code, second.status_code) == (202, 202)
    assert set(ids(first)).isdisjoint(ids(second))
    assert Event.objects.filter(api_key=alice.api_key).count() == 2
    assert Event.objects.filter(api_key=bob.api_key).count() == 2


@pytest.mark.django_db
def test_a_key_used_for_a_single_publish_is_409_for_a_batch(client_all):
    # given a single publish made with a key
    single = publish(client_all, PING, key="order-7")
    assert single.status_code == 202

    # when a batch (even of that one event) uses the same key
    response = batch(client_all, [PING], key="order-7")

    # then it conflicts and points at the single publish's event; nothing new is stored
    error = assert_error(response, 409, "idempotency_key_reused")
    assert error["details"] == {"event": single.json()["id"]}
    assert "single publish" in error["message"]
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_a_key_used_for_a_batch_is_409_for_a_single_publish(client_all):
    # given a batch of one published with a key
    first = batch(client_all, [PING], key="order-8")
    assert first.status_code == 202

    # when a single publish of the same event uses the same key
    response = publish(client_all, PING, key="order-8")

    # then it conflicts and points at the batch's first event; nothing new is stored
    error = assert_error(response, 409, "idempotency_key_reused")
    assert error["details"] == {"event": ids(first)[0]}
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_a_refused_batch_leaves_its_key_free(client_all):
    # given a batch refused for an invalid event (nothing stored)
    refused = batch(client_all, [PING, {"type": "demo.ping", "payload": {"message": 7}}],
                    key="fix-and-retry")
    assert_error(refused, 422, "validation_failed")

    # when the corrected batch is sent with the same key
    response = batch(client_all, [PING, PING], key="fix-and-retry")

    # then it is a new batch
    assert response.status_code == 202, response.content
    assert Event.objects.count() == 2


@pytest.mark.django_db
def test_without_a_key_every_batch_is_new(client_all):
    # given no Idempotency-Key
    # when the same batch is sent twice
    first = batch(client_all, pings(2))
    second = batch(client_all, pings(2))

    # then both are stored, and none of the events carries a key
    assert (first.status_code, second.status_code) == (202, 202)
    assert Event.objects.filter(idempotency_key__isnull=True).count() == 4


@pytest.mark.django_db
def test_batch_idempotency_key_longer_than_255_is_422(client_all):
    # given an Idempotency-Key of 256 characters
    # when a batch uses it
    response = batch(client_all, pings(2), key="k" * 256)

    # then it is refused, and nothing is stored
    error = assert_error(response, 422, "invalid_idempotency_key")
    assert "255" in error["message"]
    assert Event.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_with_the_same_key_store_one_batch(make_client, broker):
    # given 6 clients sharing one API key, ready to send the same batch of 20 at once
    owner = make_client([Scopes.EVENTS_PUBLISH], name="racer")
    count = 6

    # when they all post simultaneously
    responses = simultaneously(
        count, lambda: batch(bearer(owner.raw_key), pings(20), key="race-1"), timeout=120)

    # then every request answered with the same 20 events in the same order, exactly one of
    # them as their creator
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (count - 1) + [202], [r.content[:300] for r in responses]
    assert len({tuple(ids(r)) for r in responses}) == 1
    assert all(r["Idempotent-Replayed"] == "true" for r in responses if r.status_code == 200)

    # and the database holds the 20 events with their 20 jobs, sent to the broker once
    assert {str(pk) for pk in Event.objects.values_list("pk", flat=True)} == set(
        ids(responses[0]))
    assert Job.objects.count() == 20
    [message] = queued_messages(broker, "events")
    assert sorted(message_args(message)[0]) == sorted(
        str(pk) for pk in Job.objects.values_list("pk", flat=True))

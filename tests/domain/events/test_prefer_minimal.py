"""`Prefer: return=minimal` (RFC 7240) on single and batch publish: ids and statuses only,
with `Preference-Applied`; the full representation stays the default."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIRequestFactory

from domain.events.apis import prefers_minimal
from domain.events.models import Event

PUBLISH = "event-publish"
BATCH = "event-batch-publish"
PING = {"type": "demo.ping", "payload": {"message": "hi"}}
MINIMAL = {"HTTP_PREFER": "return=minimal"}


def assert_minimal_event(event: dict) -> None:
    """Exactly the minimal shape: the event's id, status and url, each job's id and status."""
    assert set(event) == {"id", "status", "url", "jobs"}
    assert event["url"] == f"http://testserver/api/v1/events/{event['id']}"
    assert event["jobs"] and all(set(job) == {"id", "status"} for job in event["jobs"])


@pytest.mark.django_db
def test_single_publish_answers_minimal_when_asked(client_all):
    # given a client that prefers the minimal answer
    # when it publishes
    response = client_all.post(reverse(PUBLISH), PING, format="json", **MINIMAL)

    # then the 202 holds ids and statuses only, and says the preference was applied
    assert response.status_code == 202, response.content
    assert response["Preference-Applied"] == "return=minimal"
    body = response.json()
    assert_minimal_event(body)
    event = Event.objects.get()
    assert body["id"] == str(event.pk)
    assert body["status"] == event.status
    assert body["jobs"] == [{"id": str(job.pk), "status": job.status}
                            for job in event.jobs.all()]


@pytest.mark.django_db
def test_batch_publish_answers_minimal_when_asked(client_all):
    # given a batch of three
    events = [{"type": "demo.ping", "payload": {"message": f"m{i}"}} for i in range(3)]

    # when it is published with Prefer: return=minimal
    response = client_all.post(reverse(BATCH), {"events": events}, format="json", **MINIMAL)

    # then every event is in the minimal shape, in order, and the preference was applied
    assert response.status_code == 202, response.content
    assert response["Preference-Applied"] == "return=minimal"
    body = response.json()
    assert set(body) == {"events"}
    for event in body["events"]:
        assert_minimal_event(event)
    stored = {str(pk) for pk in Event.objects.values_list("pk", flat=True)}
    assert [e["id"] for e in body["events"]] and {e["id"] for e in body["events"]} == stored


@pytest.mark.django_db
@pytest.mark.parametrize("extra", [{}, {"HTTP_PREFER": "return=representation"},
                                   {"HTTP_PREFER": "respond-async"}])
@pytest.mark.parametrize("path", [PUBLISH, BATCH])
def test_the_full_answer_stays_the_default(client_all, path, extra):
    # given no preference, return=representation, or a preference the server does not support
    body = PING if path == PUBLISH else {"events": [PING]}

    # when the client publishes
    response = client_all.post(reverse(path), body, format="json", **extra)

    # then it gets the full events, payloads included, and no Preference-Applied
    assert response.status_code == 202, response.content
    assert not response.has_header("Preference-Applied")
    event = response.json() if path == PUBLISH else response.json()["events"][0]
    assert event["payload"] == {"message": "hi"}
    assert {"type", "occurred_at", "correlation_id"} <= set(event)
    assert "kind" in event["jobs"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("path", [PUBLISH, BATCH])
def test_an_idempotent_replay_is_minimal_when_asked(client_all, path):
    # given a publish made with a key and the full answer
    body = PING if path == PUBLISH else {"events": [PING]}
    first = client_all.post(reverse(path), body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 202

    # when it is replayed with Prefer: return=minimal
    second = client_all.post(reverse(path), body, format="json", HTTP_IDEMPOTENCY_KEY="k",
                             **MINIMAL)

    # then the replay is the minimal shape of the same event
    assert second.status_code == 200, second.content
    assert second["Idempotent-Replayed"] == "true"
    assert second["Preference-Applied"] == "return=minimal"
    event = second.json() if path == PUBLISH else second.json()["events"][0]
    assert_minimal_event(event)
    first_event = first.json() if path == PUBLISH else first.json()["events"][0]
    assert event["id"] == first_event["id"]


@pytest.mark.parametrize(("header", "minimal"), [
    ("return=minimal", True),
    ("RETURN=Minimal", True),
    ('return="minimal"', True),
    ("return = minimal", True),
    ("respond-async, return=minimal", True),
    ("respond-async, wait=10, return=minimal; foo=bar", True),
    ("return=representation", False),
    ("return=representation, return=minimal", False),  # the first one counts
    ("return=minimalist", False),
    ("handling=lenient", False),
    ("", False),
    ("minimal", False),
])
def test_prefer_header_parsing(header, minimal):
    # given a request carrying the header as clients may write it
    request = APIRequestFactory().post("/", HTTP_PREFER=header)

    # then return=minimal is recognised, and nothing else is taken for it
    assert prefers_minimal(request) is minimal

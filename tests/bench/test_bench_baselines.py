"""The suite's single-publish baselines do what they are named for: the naive recipes store the
event and send one message."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from domain.events.models import Event
from tests.conftest import queued_tasks

PING = {"type": "demo.ping", "payload": {"message": "naive"}}


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="bench.urls")
def test_the_naive_recipe_stores_the_event_and_sends_one_message(client, broker):
    # when the plain Django view is posted an event, with no credentials
    response = client.post("/bench/naive", data=json.dumps(PING),
                           content_type="application/json")

    # then it answers 202 with the stored event's id
    assert response.status_code == 202
    event = Event.objects.get(pk=response.json()["id"])
    assert (event.type, event.payload) == ("demo.ping", {"message": "naive"})
    # and the no-op task went, with that id, to the queue no worker consumes
    assert [(t["task"], t["arg"]) for t in queued_tasks(broker, "bench_naive")] == [
        ("bench.naive_noop", str(event.pk))]


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="bench.urls")
def test_the_naive_drf_recipe_sends_its_message_on_commit(client, broker,
                                                           django_capture_on_commit_callbacks):
    # when the DRF view is posted an event, with no credentials
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/bench/naive-drf", data=json.dumps(PING),
                               content_type="application/json")

        # then the event is stored and nothing is sent before the commit
        assert response.status_code == 202
        event = Event.objects.get(pk=response.json()["id"])
        assert response.json()["payload"] == {"message": "naive"}
        assert queued_tasks(broker, "bench_naive") == []

    # and the message goes once the transaction commits
    for callback in callbacks:
        callback()
    assert [(t["task"], t["arg"]) for t in queued_tasks(broker, "bench_naive")] == [
        ("bench.naive_noop", str(event.pk))]

"""Payload limits: size and depth, for single events and inside a batch."""

import pytest
from django.urls import reverse

from domain.events.models import Event

pytestmark = pytest.mark.django_db

PING = {"type": "demo.ping", "payload": {"message": "hi"}}


def test_payload_too_large(client_all, settings):
    settings.API_MAX_PAYLOAD_BYTES = 100
    response = client_all.post(reverse("event-publish"), {
        "type": "demo.ping", "payload": {"message": "x" * 200}}, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"]["limit"] == 100 and error["details"]["size"] > 100
    assert not Event.objects.exists()


def _nested(depth: int) -> dict:
    value: dict = {"message": "deep"}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def test_payload_too_deep(client_all, settings):
    settings.API_MAX_PAYLOAD_DEPTH = 4
    ok = client_all.post(reverse("event-publish"), {"type": "demo.ping",
                                                    "payload": _nested(4)}, format="json")
    assert ok.status_code == 202
    response = client_all.post(reverse("event-publish"), {
        "type": "demo.ping", "payload": _nested(5)}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "payload_too_deep"
    assert response.json()["error"]["details"] == {"limit": 4, "depth": 5}
    assert Event.objects.count() == 1


def test_payload_limits_apply_inside_a_batch(client_all, settings):
    settings.API_MAX_PAYLOAD_DEPTH = 3
    response = client_all.post(reverse("event-batch-publish"), {"events": [
        PING, {"type": "demo.ping", "payload": _nested(6)}]}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["details"]["events"]["1"]["code"] == "payload_too_deep"
    assert not Event.objects.exists()

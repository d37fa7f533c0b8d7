"""Throttling, payload limits and secrets in logs."""

import logging
import uuid

import pytest
from django.urls import reverse

import domain.common.redis as project_redis
from domain.common.logging import redact
from domain.common.models import Scopes
from domain.events.models import Event

pytestmark = pytest.mark.django_db

PING = {"type": "demo.ping", "payload": {"message": "hi"}}


@pytest.fixture
def low_rates(settings):
    settings.API_THROTTLE_RATES = {"publish": "3/m", "read": "5/m", "write": "2/m"}


# --- throttling -----------------------------------------------------------------------

def test_publish_over_the_rate_is_429_with_retry_after(client_all, low_rates):
    url = reverse("event-publish")
    codes = [client_all.post(url, PING, format="json").status_code for _ in range(3)]
    assert codes == [202, 202, 202]
    response = client_all.post(url, PING, format="json")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert Event.objects.count() == 3  # the refused one wrote nothing


def test_rates_are_per_key_and_per_scope(make_client, low_rates):
    first, second = make_client(name="first"), make_client(name="second")
    url = reverse("event-publish")
    for _ in range(3):
        first.post(url, PING, format="json")
    assert first.post(url, PING, format="json").status_code == 429
    # another key has its own budget
    assert second.post(url, PING, format="json").status_code == 202
    # and reads are counted apart from publishes
    assert first.get(reverse("event-type-list")).status_code == 200


def test_batch_counts_against_publish(client_all, low_rates):
    batch = {"events": [PING, PING]}
    for _ in range(3):
        assert client_all.post(reverse("event-batch-publish"), batch,
                               format="json").status_code == 202
    assert client_all.post(reverse("event-publish"), PING, format="json").status_code == 429


def test_writes_throttled_separately(client_all, low_rates):
    url = reverse("job-list")
    body = {"kind": "cache_invalidation", "params": {"keys": ["a"]}}
    assert [client_all.post(url, body, format="json").status_code for _ in range(3)] == [
        202, 202, 429]
    # reading the same endpoint is another scope
    assert client_all.get(url).status_code == 200


def test_limiter_unavailable_lets_requests_through(client_all, low_rates, monkeypatch,
                                                   settings):
    # a Redis that does not answer (nothing listens on port 1), through the project's client
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(project_redis, "_client", None)
    url = reverse("event-publish")
    codes = [client_all.post(url, PING, format="json").status_code for _ in range(5)]
    assert codes == [202] * 5


def test_unauthenticated_requests_are_401_not_counted(client, low_rates):
    for _ in range(5):
        assert client.post(reverse("event-publish"), PING,
                           content_type="application/json").status_code == 401


# --- payload limits -------------------------------------------------------------------

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


# --- scopes on the job operations -----------------------------------------------------

@pytest.mark.parametrize(("method", "name", "needs_id"), [
    ("post", "job-retry", True),
    ("post", "job-cancel", True),
    ("post", "job-bulk-retry", False),
])
def test_job_operations_need_jobs_write(make_client, method, name, needs_id):
    reader = make_client([Scopes.JOBS_READ, Scopes.EVENTS_PUBLISH])
    url = reverse(name, args=[uuid.uuid4()]) if needs_id else reverse(name)
    response = getattr(reader, method)(url, {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


# --- secrets never logged -------------------------------------------------------------

def test_request_logs_do_not_contain_the_key_or_a_webhook_secret(make_client, caplog):
    client = make_client()
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    caplog.set_level(logging.DEBUG)
    # a publish carrying a webhook secret in its payload, a 401 with a wrong key, and a 422
    client.post(reverse("event-publish"), {"type": "demo.ping", "payload": {
        "message": "hi", "webhook_secret": secret}}, format="json",
        HTTP_AUTHORIZATION=f"Bearer {client.raw_key}")
    client.post(reverse("event-publish"), PING, format="json",
                HTTP_AUTHORIZATION=f"Bearer {client.raw_key}x")
    client.post(reverse("event-publish"), {"type": "nope", "payload": {"s": secret}},
                format="json")
    logged = caplog.text
    assert client.raw_key not in logged
    assert secret not in logged


def test_redaction_filter_masks_credentials():
    line = ("Authorization: Bearer cvk_abc-123_XYZ and key=cvk_other_key "
            "secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    cleaned = redact(line)
    assert "cvk_" not in cleaned and "whsec_" not in cleaned
    assert cleaned.count("[REDACTED]") == 3
    assert redact("nothing secret here") == "nothing secret here"


def test_redaction_applies_to_the_configured_handlers():
    from logging.config import dictConfig

    from django.conf import settings

    config = settings.LOGGING
    assert all("redact" in h.get("filters", []) for h in config["handlers"].values())
    dictConfig(config)  # the configuration loads with the filter

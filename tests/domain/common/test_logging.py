"""Secrets never reach a log line: request logs, the redaction filter, the handlers."""

import logging

import pytest
from django.urls import reverse

from domain.common.logging import redact

pytestmark = pytest.mark.django_db

PING = {"type": "demo.ping", "payload": {"message": "hi"}}


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

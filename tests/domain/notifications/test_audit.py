"""Every operator lever on webhooks writes one audit entry: disable and enable (a pause and a
resume), rotate a secret, recover deliveries, from the API and the admin; a dry run none."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from domain.access.models import ActorKind, AuditAction, AuditEntry
from domain.notifications.models import (
    Delivery,
    DeliveryStatus,
    EndpointState,
    Message,
    WebhookEndpoint,
)
from tests.audit_utils import key_actor, summary, the_audit_entry

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_client):
    return make_client(["webhooks:manage"], name="hooks")


def _endpoint(client) -> WebhookEndpoint:
    response = client.post(reverse("webhook-endpoint-list"),
                           {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert response.status_code == 201, response.content
    return WebhookEndpoint.objects.get(pk=response.json()["id"])


def _failed_delivery(endpoint: WebhookEndpoint) -> Delivery:
    at = timezone.now() - timedelta(minutes=5)
    message = Message.objects.create(event_id=uuid.uuid4(), type="demo.ping",
                                     data={"message": "hi"}, timestamp=at, created_at=at)
    return Delivery.objects.create(message=message, endpoint=endpoint,
                                   status=DeliveryStatus.FAILED, created_at=at)


@pytest.mark.parametrize(("enabled", "action", "state"), [
    (False, AuditAction.PAUSE, EndpointState.DISABLED),
    (True, AuditAction.RESUME, EndpointState.ACTIVE),
])
def test_disabling_or_enabling_by_patch_is_one_entry(owner, enabled, action, state):
    endpoint = _endpoint(owner)
    if enabled:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            state=EndpointState.DISABLED, enabled=False)

    response = owner.patch(reverse("webhook-endpoint-detail", args=[endpoint.pk]),
                           {"enabled": enabled}, format="json")

    assert response.status_code == 200, response.content
    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.API_KEY, action, "webhook_endpoint", str(endpoint.pk), 1)
    assert entry.actor == key_actor(owner)
    assert entry.detail["state"] == state


def test_a_patch_that_does_not_switch_it_writes_no_entry(owner):
    endpoint = _endpoint(owner)
    owner.patch(reverse("webhook-endpoint-detail", args=[endpoint.pk]),
                {"description": "billing"}, format="json")
    assert not AuditEntry.objects.exists()


def test_a_secret_rotation_is_one_entry(owner):
    endpoint = _endpoint(owner)

    response = owner.post(reverse("webhook-endpoint-rotate-secret", args=[endpoint.pk]),
                          {"overlap_seconds": 60}, format="json")

    assert response.status_code == 200, response.content
    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.API_KEY, AuditAction.ROTATE, "webhook_endpoint",
                              str(endpoint.pk), 1)
    assert "whsec_" not in str(entry.detail)  # the secret is never written down


def test_a_recovery_is_one_entry_counting_the_deliveries_and_a_dry_run_none(owner):
    endpoint = _endpoint(owner)
    for _ in range(2):
        _failed_delivery(endpoint)
    url = reverse("webhook-endpoint-recover", args=[endpoint.pk])
    since = (timezone.now() - timedelta(hours=1)).isoformat()

    assert owner.post(url, {"since": since, "dry_run": True}, format="json").json() == {
        "recovered": 2, "dry_run": True}
    assert not AuditEntry.objects.exists()
    assert owner.post(url, {"since": since}, format="json").json()["recovered"] == 2

    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.API_KEY, AuditAction.RECOVER, "webhook_endpoint",
                              str(endpoint.pk), 2)
    assert set(entry.detail) == {"since", "until"}


@pytest.mark.parametrize(("admin_action", "action", "start"), [
    ("disable_endpoints", AuditAction.PAUSE, EndpointState.ACTIVE),
    ("enable_endpoints", AuditAction.RESUME, EndpointState.DISABLED),
])
def test_an_admin_switch_is_one_entry_for_the_endpoints_it_moved(operator, owner, admin_action,
                                                                  action, start):
    endpoints = [_endpoint(owner), _endpoint(owner)]
    WebhookEndpoint.objects.filter(pk=endpoints[0].pk).update(
        state=start, enabled=start != EndpointState.DISABLED)
    ids = [str(e.pk) for e in endpoints]

    operator.post(reverse("admin:notifications_webhookendpoint_changelist"), {
        "action": admin_action, ACTION_CHECKBOX_NAME: ids, "post": "yes"})

    entry = the_audit_entry()
    moved = 1 if start == EndpointState.DISABLED else 2  # enable moves the disabled one only
    assert summary(entry) == (ActorKind.USER, action, "webhook_endpoints", "2 selected", moved)
    assert entry.actor == "ops" and entry.detail["ids"] == ids


def test_an_admin_recovery_is_one_entry_counting_the_deliveries(operator, owner):
    endpoint = _endpoint(owner)
    deliveries = [_failed_delivery(endpoint), _failed_delivery(endpoint)]

    operator.post(reverse("admin:notifications_delivery_changelist"), {
        "action": "recover_deliveries", ACTION_CHECKBOX_NAME: [str(d.pk) for d in deliveries],
        "post": "yes"})

    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.USER, AuditAction.RECOVER, "deliveries",
                              "2 selected", 2)

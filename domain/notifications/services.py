"""Writes clients and operators make: endpoints (register, change, delete, rotate the secret),
recover failed or parked deliveries, and the test ping."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from domain.access.models import ApiKey
from domain.common.errors import Conflict, ValidationFailed
from domain.events.registry import get_event_type
from domain.notifications import ssrf
from domain.notifications.deliveries import deliveries_requeue, delivery_send_now
from domain.notifications.health import endpoint_disable
from domain.notifications.models import (
    RECOVERABLE_DELIVERY_STATUSES,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
    Message,
    WebhookEndpoint,
    new_secret,
)
from domain.notifications.subscriptions import subscriptions

logger = logging.getLogger(__name__)

TEST_EVENT_TYPE = "webhook.test"
OWNER_DISABLED = "disabled by its owner"


def _check_event_types(event_types: list[str] | None) -> list[str] | None:
    if not event_types:
        return None
    for name in event_types:
        get_event_type(name)  # 422 unknown_event_type
    return sorted(set(event_types))


def endpoint_create(*, url: str, api_key: ApiKey | None, event_types: list[str] | None = None,
                    description: str = "", enabled: bool = True,
                    rate_limit: int | None = None) -> WebhookEndpoint:
    """Register an endpoint; its secret is made here and shown once, in the answer."""
    ssrf.check_url(url)
    now = timezone.now()
    endpoint = WebhookEndpoint(
        url=url, api_key=api_key, event_types=_check_event_types(event_types),
        description=description, enabled=enabled, rate_limit=rate_limit, secret=new_secret(),
        state=EndpointState.ACTIVE if enabled else EndpointState.DISABLED,
        disabled_reason="" if enabled else OWNER_DISABLED, created_at=now, updated_at=now)
    endpoint.save(force_insert=True)
    subscriptions.forget()
    logger.info("webhook endpoint created endpoint=%s url=%s", endpoint.pk, url)
    return endpoint


_CHANGEABLE = ("url", "event_types", "description", "rate_limit")


def endpoint_update(*, endpoint: WebhookEndpoint, **changes: Any) -> WebhookEndpoint:
    """Change what was sent. `enabled: false` disables it (its waiting deliveries parked);
    `enabled: true` on a disabled endpoint makes it active, with a clean health record, and
    resumes its parked deliveries, oldest first."""
    if "url" in changes and changes["url"] != endpoint.url:
        ssrf.check_url(changes["url"])
    if "event_types" in changes:
        changes["event_types"] = _check_event_types(changes["event_types"])
    enabled = changes.pop("enabled", None)
    fields = [name for name in _CHANGEABLE if name in changes]
    for name in fields:
        setattr(endpoint, name, changes[name])
    endpoint.updated_at = timezone.now()
    endpoint.save(update_fields=[*fields, "updated_at"])
    if enabled is False:
        endpoint_disable(endpoint=endpoint, reason=OWNER_DISABLED, by_owner=True)
    elif enabled is True and endpoint.state == EndpointState.DISABLED:
        endpoint_enable(endpoint=endpoint)
    subscriptions.forget()
    endpoint.refresh_from_db()
    return endpoint


def endpoint_enable(*, endpoint: WebhookEndpoint) -> int:
    """A disabled endpoint becomes active again, its health record cleared, and its parked
    deliveries are sent, oldest first. Answers how many were resumed."""
    with transaction.atomic():
        moved = WebhookEndpoint.objects.filter(pk=endpoint.pk,
                                               state=EndpointState.DISABLED).update(
            state=EndpointState.ACTIVE, enabled=True, disabled_reason="",
            consecutive_failures=0, failing_since=None, circuit_open_until=None,
            circuit_probe_at=None, circuit_cooldown=0, updated_at=timezone.now())
        if not moved:
            return 0
        parked = list(Delivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PARKED)
                      .order_by("created_at", "id"))
        resumed = deliveries_requeue(deliveries=parked)
    logger.info("webhook endpoint enabled endpoint=%s resumed=%d", endpoint.pk, resumed)
    return resumed


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete it with its deliveries and their attempts; their jobs find nothing to send."""
    endpoint.delete()
    subscriptions.forget()


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint,
                           overlap_seconds: int | None = None) -> WebhookEndpoint:
    """A new secret; the one it replaces keeps signing, beside it, for the overlap."""
    overlap = settings.WEBHOOK_SECRET_OVERLAP_SECONDS if overlap_seconds is None \
        else overlap_seconds
    now = timezone.now()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + timedelta(seconds=overlap)
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at",
                                 "updated_at"])
    logger.info("webhook secret rotated endpoint=%s overlap=%ss", endpoint.pk, overlap)
    return endpoint


def endpoint_recover(*, endpoint: WebhookEndpoint, since: datetime,
                     until: datetime | None = None, dry_run: bool = False) -> int:
    """Send again every failed or parked delivery of an event to the endpoint made in
    [since, until), oldest first, with the same webhook-id; answers how many (a dry run only
    counts). Test pings are not sent again."""
    until = until or timezone.now()
    if until <= since:
        raise ValidationFailed("`until` must be after `since`.", code="validation_failed",
                               details={"until": ["must be after since"]})
    if endpoint.state == EndpointState.DISABLED and not dry_run:
        raise Conflict("The endpoint is disabled; enable it first (that resumes its parked "
                       "deliveries), then recover what failed.", code="endpoint_disabled",
                       details={"state": endpoint.state})
    # Events' deliveries only: a test ping that failed was answered to whoever sent it.
    matching = Delivery.objects.filter(endpoint=endpoint,
                                       status__in=RECOVERABLE_DELIVERY_STATUSES,
                                       message__event_id__isnull=False,
                                       created_at__gte=since, created_at__lt=until)
    if dry_run:
        return matching.count()
    with transaction.atomic():
        chosen = list(matching.select_for_update(skip_locked=True).order_by("created_at", "id"))
        count = deliveries_requeue(deliveries=chosen)
    logger.info("webhook deliveries recovered endpoint=%s count=%d since=%s until=%s",
                endpoint.pk, count, since.isoformat(), until.isoformat())
    return count


def endpoint_test(*, endpoint: WebhookEndpoint) -> tuple[Delivery, DeliveryAttempt]:
    """A signed `webhook.test` message delivered now; the attempt is the answer. It does not
    move the endpoint's health, and is not retried."""
    now = timezone.now()
    message = Message.objects.create(
        type=TEST_EVENT_TYPE, timestamp=now, created_at=now,
        data={"endpoint_id": str(endpoint.pk), "message": "A test delivery from Conveyor."})
    delivery = Delivery.objects.create(message=message, endpoint=endpoint, created_at=now,
                                       api_key_id=endpoint.api_key_id,
                                       status=DeliveryStatus.SENDING)
    attempt = delivery_send_now(delivery=delivery)
    return delivery, attempt

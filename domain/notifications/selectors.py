"""Reads for notifications. A key sees only its own endpoints, notifications and their
deliveries, unless it has the admin scope. Inboxes and preferences belong to recipients, not
to keys: domain/notifications/inbox.py and preferences.py read them."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Case, Count, F, OuterRef, Q, QuerySet, Subquery, Value, When

from domain.access.models import ApiKey
from domain.access.selectors import visible_to
from domain.common.errors import NotFound
from domain.jobs.models import Job
from domain.notifications.models import (
    Channel,
    Delivery,
    DeliveryAttempt,
    EndpointState,
    Notification,
    WebhookEndpoint,
)


def endpoint_list(*, api_key: ApiKey | None) -> QuerySet[WebhookEndpoint]:
    return visible_to(WebhookEndpoint.objects.all(), api_key)


def endpoint_get(*, endpoint_id, api_key: ApiKey | None) -> WebhookEndpoint:
    endpoint = endpoint_list(api_key=api_key).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound("Webhook endpoint not found.")
    return endpoint


# Health as an operator reads it: the state, with an active endpoint split by its circuit and
# its latest outcomes (domain/notifications/health.py moves all three).
ENDPOINT_HEALTH = ("healthy", "failing", "circuit_open", "degraded", "disabled")


def _health(now: datetime) -> Case:
    return Case(
        When(state=EndpointState.DISABLED, then=Value("disabled")),
        When(state=EndpointState.DEGRADED, then=Value("degraded")),
        When(circuit_open_until__gt=now, then=Value("circuit_open")),
        When(consecutive_failures__gt=0, then=Value("failing")),
        default=Value("healthy"))


def endpoints_by_health(*, now: datetime, limit: int = 20) -> tuple[dict[str, int], list]:
    """({health: endpoints}, the `limit` unhealthy endpoints failing longest first, each with
    its `health`): one aggregate and one short list, whatever the number of endpoints."""
    endpoints = WebhookEndpoint.objects.annotate(health=_health(now))
    counts = {health: 0 for health in ENDPOINT_HEALTH}
    for row in endpoints.values("health").annotate(n=Count("id")).order_by():
        counts[row["health"]] = row["n"]
    unhealthy = list(endpoints.filter(~Q(health="healthy"))
                     .order_by(F("failing_since").asc(nulls_last=True), "-updated_at")[:limit])
    return counts, unhealthy


def _with_next_attempt(deliveries: QuerySet[Delivery]) -> QuerySet[Delivery]:
    # A delivery waiting for a retry waits on its job's schedule: the job row knows when.
    return deliveries.select_related("message").annotate(
        job_next_retry_at=Subquery(Job.objects.filter(pk=OuterRef("job_id"))
                                   .values("next_retry_at")[:1]))


def delivery_list(*, api_key: ApiKey | None, status: str | None = None, endpoint_id=None,
                  event_id=None, channel: str | None = None, recipient_id: str | None = None,
                  notification_id=None) -> QuerySet[Delivery]:
    deliveries = visible_to(Delivery.objects.all(), api_key)
    if status:
        deliveries = deliveries.filter(status=status)
    if endpoint_id:
        deliveries = deliveries.filter(endpoint_id=endpoint_id)
    if event_id:
        deliveries = deliveries.filter(message__event_id=event_id)
    if channel:
        deliveries = deliveries.filter(channel=channel)
    if recipient_id is not None:
        deliveries = deliveries.filter(recipient_id=recipient_id)
    if notification_id:
        deliveries = deliveries.filter(notification_id=notification_id)
    return _with_next_attempt(deliveries)


def delivery_get(*, delivery_id, api_key: ApiKey | None) -> Delivery:
    delivery = _with_next_attempt(visible_to(Delivery.objects.all(), api_key)).filter(
        pk=delivery_id).first()
    if delivery is None:
        raise NotFound("Delivery not found.")
    return delivery


def webhook_delivery_of_job(*, job_id) -> Delivery | None:
    """The webhook delivery this job carries now, with its endpoint (None when it carries
    none, or a newer job carries it: a recovery or a resume superseded this one). One indexed
    lookup (`delivery_job`): "why isn't this job running?" asks it (workers/explain.py)."""
    return (Delivery.objects.select_related("endpoint")
            .filter(job_id=job_id, channel=Channel.WEBHOOK).first())


def delivery_attempts(*, delivery: Delivery) -> QuerySet[DeliveryAttempt]:
    return DeliveryAttempt.objects.filter(delivery=delivery).order_by("number", "id")


def notification_list(*, api_key: ApiKey | None, template: str | None = None,
                      category: str | None = None) -> QuerySet[Notification]:
    notifications = visible_to(Notification.objects.all(), api_key)
    if template:
        notifications = notifications.filter(template=template)
    if category:
        notifications = notifications.filter(category=category)
    return notifications


def notification_get(*, notification_id, api_key: ApiKey | None) -> Notification:
    """The notification (404 for another key's, as for one that does not exist)."""
    notification = notification_list(api_key=api_key).filter(pk=notification_id).first()
    if notification is None:
        raise NotFound("Notification not found.")
    return notification


def notification_deliveries(*, notification: Notification) -> QuerySet[Delivery]:
    """Its deliveries in the request's order (recipients, then channels)."""
    return _with_next_attempt(Delivery.objects.filter(notification=notification)).order_by(
        "created_at", "id")

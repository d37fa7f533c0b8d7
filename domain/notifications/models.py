"""Notifications: webhook endpoints, the messages sent to them, and every delivery and attempt.

A **message** is what leaves the system once: a type, a timestamp and its data, with a
Standard-Webhooks id (`msg_…`) that stays the same across every retry and recovery, so a
receiver can deduplicate. A **delivery** is one message to one destination (a webhook
endpoint; the email issue adds its recipients to the same table): unique on (message,
endpoint), it carries the status API clients read, and each try of it is a
**delivery attempt** with its HTTP facts. The work of sending is a job (domain/jobs) of kind
`webhook_delivery`: its retry policy spaces the attempts, its lease and the orphan rescue
survive a dead worker; the delivery row is what the job's work is about.
"""

from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


def new_message_id() -> str:
    # Standard Webhooks recommends a prefixed, unique id per message.
    return "msg_" + uuid.uuid4().hex


class EndpointState(models.TextChoices):
    ACTIVE = "active"
    DEGRADED = "degraded", "Degraded (failing; its owner was warned)"
    DISABLED = "disabled"


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    api_key = models.ForeignKey("access.ApiKey", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="webhook_endpoints",
                                help_text="The key that registered it: its owner.")
    url = models.URLField(max_length=2000)
    event_types = models.JSONField(
        null=True, blank=True,
        help_text="Event types it subscribes to; empty (null) means every type.")
    description = models.CharField(max_length=500, blank=True, default="")
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=16, choices=EndpointState.choices,
                             default=EndpointState.ACTIVE)
    disabled_reason = models.CharField(max_length=500, blank=True, default="")
    rate_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Messages per second, shared by every worker; "
        "empty means no limit.")
    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # Health: every attempt's outcome moves these (domain/notifications/health.py).
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    circuit_open_until = models.DateTimeField(
        null=True, blank=True, help_text="Circuit breaker: open (deliveries wait) until then.")
    circuit_cooldown = models.PositiveIntegerField(default=0, help_text="Seconds, last cool-down.")
    circuit_probe_at = models.DateTimeField(
        null=True, blank=True, help_text="Half-open: when the one probe was let through.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["api_key", "created_at"], name="endpoint_key_created")]

    def __str__(self) -> str:
        return f"{self.url} ({self.state})"

    def subscribes_to(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


def new_secret() -> str:
    """A Standard-Webhooks secret: `whsec_` and 32 random bytes in base64 (24 to 64 bytes is
    the specification's range)."""
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Message(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_message_id,
                          editable=False, help_text="Its webhook-id.")
    event_id = models.UUIDField(null=True, blank=True, unique=True,
                                help_text="The event it announces (none for a test ping).")
    type = models.CharField(max_length=200)
    data = models.JSONField(default=dict)
    timestamp = models.DateTimeField(help_text="When the event occurred: the body's timestamp.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"
    PARKED = "parked", "Parked (endpoint disabled or circuit open; no attempts used)"
    SKIPPED = "skipped", "Skipped (no longer subscribed when its turn came)"


RECOVERABLE_DELIVERY_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.PARKED)
OPEN_DELIVERY_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING,
                          DeliveryStatus.RETRYING)


class Delivery(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices,
                              default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Every attempt, all runs.")
    job_id = models.UUIDField(null=True, blank=True,
                              help_text="The job sending it now (or last).")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    api_key = models.ForeignKey("access.ApiKey", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+",
                                help_text="The endpoint's owner, copied for the listing.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["message", "endpoint"],
                                               name="delivery_one_per_message_endpoint")]
        indexes = [
            models.Index(fields=["endpoint", "created_at"], name="delivery_endpoint_created"),
            models.Index(fields=["status", "created_at"], name="delivery_status_created"),
            models.Index(fields=["api_key", "created_at"], name="delivery_key_created"),
            models.Index(fields=["job_id"], name="delivery_job",
                         condition=Q(job_id__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} → {self.endpoint_id} ({self.status})"


class AttemptResult(models.TextChoices):
    DELIVERED = "delivered"
    FAILED = "failed", "Failed, will retry"
    GAVE_UP = "gave_up", "Failed, gave up"


class DeliveryAttempt(models.Model):
    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(help_text="When the request was sent.")
    outcome = models.CharField(max_length=16, choices=AttemptResult.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True, default="")
    error_type = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["delivery", "number"]
        indexes = [models.Index(fields=["delivery", "number"], name="dattempt_delivery_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.outcome}"

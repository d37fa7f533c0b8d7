"""Notifications: webhook endpoints and the messages sent to them; notifications to people
(email and in-app) with their digests, inbox items and preferences; and every delivery and
attempt of all of them.

A **message** is what leaves the system once: a type, a timestamp and its data, with a
Standard-Webhooks id (`msg_…`) that stays the same across every retry and recovery, so a
receiver can deduplicate. A **delivery** is one message to one destination (a webhook
endpoint; the email issue adds its recipients to the same table): unique on (message,
endpoint), it carries the status API clients read, and each try of it is a
**delivery attempt** with its HTTP facts. The work of sending is a job (domain/jobs) of kind
`webhook_delivery`: its retry policy spaces the attempts, its lease and the orphan rescue
survive a dead worker; the delivery row is what the job's work is about.

A **notification** is one send of a template (registered in code, `catalogue.py`) to up to
1,000 recipients: one delivery per (recipient, channel), unique, so a retried job or a replayed
request never makes a second. An email delivery of a digest template joins its recipient's
open **digest** instead of sending alone; an in-app delivery becomes an **inbox item** with a
read state. **Preferences** are per recipient, category and channel.
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


class Channel(models.TextChoices):
    WEBHOOK = "webhook"
    EMAIL = "email"
    IN_APP = "in_app", "In-app"


PEOPLE_CHANNELS = (Channel.EMAIL, Channel.IN_APP)


class Notification(models.Model):
    """One send of a template: what the client asked for, once. Its deliveries say what
    happened to each recipient on each channel."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.CharField(max_length=100)
    category = models.CharField(max_length=100)
    channels = models.JSONField(default=list)
    context = models.JSONField(default=dict)
    recipients_count = models.PositiveIntegerField(default=0)
    api_key = models.ForeignKey("access.ApiKey", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+")
    # NULL, not "", when absent: the unique constraint must not hold keyless sends together.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_hash = models.CharField(max_length=64, blank=True, default="")
    event_id = models.UUIDField(null=True, blank=True,
                                help_text="The event it came from, if an event's handler sent it.")
    source = models.CharField(  # noqa: DJ001 - NULL when absent, as the key above
        max_length=255, null=True, blank=True,
        help_text="For a notification an event's handler sent: `<event id>:<notifier>`, "
        "unique, so a handler's job run twice sends once.")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["api_key", "idempotency_key"],
                                    name="notification_idempotency_key",
                                    condition=Q(idempotency_key__isnull=False)),
            models.UniqueConstraint(fields=["source"], name="notification_one_per_source",
                                    condition=Q(source__isnull=False)),
        ]
        indexes = [models.Index(fields=["api_key", "created_at"],
                                name="notification_key_created")]

    def __str__(self) -> str:
        return f"{self.template} to {self.recipients_count} ({self.pk})"


class DigestState(models.TextChoices):
    OPEN = "open", "Open (collecting)"
    CLOSED = "closed", "Closed (sending or sent)"


class Digest(models.Model):
    """A recipient's pending digest of one template (and digest key): the email deliveries
    that arrive while it is open join it, and its carrier delivery sends them all as one
    email when it closes. At most one is open per (template, key, recipient, address, sending
    key): a partial unique constraint, so concurrent arrivals cannot open two."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.CharField(max_length=100)
    key = models.CharField(max_length=255, blank=True, default="",
                           help_text="The template's digest key, rendered for this arrival.")
    recipient_id = models.CharField(max_length=200)
    address = models.CharField(max_length=320, blank=True, default="",
                               help_text="Where its email goes: sends to another address of "
                               "the same recipient make another digest.")
    owner = models.CharField(max_length=36, blank=True, default="", help_text=(
        "The sending API key's id ('' for the server's own sends): one key's notifications "
        "never share an email with another key's."))
    state = models.CharField(max_length=16, choices=DigestState.choices,
                             default=DigestState.OPEN)
    opened_at = models.DateTimeField(default=timezone.now)
    closes_at = models.DateTimeField()
    carrier = models.ForeignKey("Delivery", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", help_text="The delivery whose job sends it.")
    items = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [models.UniqueConstraint(
            fields=["template", "key", "recipient_id", "address", "owner"],
            name="digest_one_open", condition=Q(state="open"))]

    def __str__(self) -> str:
        return f"{self.template} digest for {self.recipient_id} ({self.state})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"
    PARKED = "parked", "Parked (endpoint disabled or circuit open; no attempts used)"
    SKIPPED = "skipped", "Skipped (not wanted when its turn came; see its reason)"


RECOVERABLE_DELIVERY_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.PARKED)
OPEN_DELIVERY_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING,
                          DeliveryStatus.RETRYING)


class Delivery(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.WEBHOOK)
    # A webhook delivery: a message to an endpoint.
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, null=True, blank=True,
                                 on_delete=models.CASCADE, related_name="deliveries")
    # An email or in-app delivery: a notification to a recipient.
    notification = models.ForeignKey(Notification, null=True, blank=True,
                                     on_delete=models.CASCADE, related_name="deliveries")
    recipient_id = models.CharField(max_length=200, blank=True, default="")
    address = models.CharField(max_length=320, blank=True, default="",
                               help_text="The email address it goes to.")
    digest = models.ForeignKey(Digest, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="deliveries")
    reason = models.CharField(max_length=500, blank=True, default="",
                              help_text="Why it was skipped or parked.")
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
        constraints = [
            models.UniqueConstraint(fields=["message", "endpoint"],
                                    name="delivery_one_per_message_endpoint"),
            models.UniqueConstraint(fields=["notification", "recipient_id", "channel"],
                                    name="delivery_one_per_recipient_channel",
                                    condition=Q(notification__isnull=False)),
        ]
        indexes = [
            models.Index(fields=["recipient_id", "created_at"], name="delivery_recipient_created",
                         condition=~Q(recipient_id="")),
            models.Index(fields=["channel", "created_at"], name="delivery_channel_created"),
            models.Index(fields=["endpoint", "created_at"], name="delivery_endpoint_created"),
            models.Index(fields=["status", "created_at"], name="delivery_status_created"),
            models.Index(fields=["api_key", "created_at"], name="delivery_key_created"),
            models.Index(fields=["job_id"], name="delivery_job",
                         condition=Q(job_id__isnull=False)),
        ]

    def __str__(self) -> str:
        if self.channel == Channel.WEBHOOK:
            return f"{self.message_id} → {self.endpoint_id} ({self.status})"
        return f"{self.channel} to {self.recipient_id} ({self.status})"


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
    smtp_code = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The SMTP server's reply code (its text is the "
        "response excerpt).")
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


class InboxState(models.TextChoices):
    UNREAD = "unread"
    READ = "read"
    ARCHIVED = "archived"


class InboxItem(models.Model):
    """An in-app notification in its recipient's inbox: one per in-app delivery."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    recipient_id = models.CharField(max_length=200)
    delivery = models.OneToOneField(Delivery, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="inbox_item")
    notification = models.ForeignKey(Notification, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    template = models.CharField(max_length=100)
    category = models.CharField(max_length=100)
    title = models.CharField(max_length=500)
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, help_text="The notification's context.")
    state = models.CharField(max_length=16, choices=InboxState.choices,
                             default=InboxState.UNREAD)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # GET /api/v1/inbox/{recipient}?state=…: an index range scan in the page's order,
            # however many items the recipient has (README "Inbox", with the plan).
            models.Index(fields=["recipient_id", "state", "-created_at", "-id"],
                         name="inbox_recipient_state"),
            # … and without ?state= (unread and read together): archived items are not in
            # it, so a recipient who archives everything still gets a range scan of the rest,
            # not a walk through (or a sort of) the whole archive.
            models.Index(fields=["recipient_id", "-created_at", "-id"], name="inbox_recipient",
                         condition=~Q(state="archived")),
        ]

    def __str__(self) -> str:
        return f"{self.title} for {self.recipient_id} ({self.state})"


class InboxCounter(models.Model):
    """A recipient's unread count, kept in the same transaction as every change of state, so
    every inbox answer carries it without counting (an inbox may hold 100,000 items)."""

    recipient_id = models.CharField(primary_key=True, max_length=200)
    unread = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.recipient_id}: {self.unread} unread"


class RecipientPreference(models.Model):
    """Whether a recipient wants a category of notifications on a channel; no row means yes.
    Categories registered as `required` ignore these (and cannot be set to no)."""

    id = models.BigAutoField(primary_key=True)
    recipient_id = models.CharField(max_length=200)
    category = models.CharField(max_length=100)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["recipient_id", "category", "channel"]
        constraints = [models.UniqueConstraint(fields=["recipient_id", "category", "channel"],
                                               name="preference_one_per_channel")]

    def __str__(self) -> str:
        return f"{self.recipient_id} {self.category}/{self.channel}: {self.enabled}"

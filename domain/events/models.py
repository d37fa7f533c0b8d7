"""The outbox: every published event, stored before the API answers.

An event's jobs (domain/jobs) point back at it (`event.jobs`); the event's status rolls up from
theirs (domain/events/rollup.py).
"""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class EventStatus(models.TextChoices):
    PENDING = "pending", "Stored, not yet enqueued"
    DISPATCHED = "dispatched", "Jobs enqueued"
    COMPLETED = "completed", "Every job succeeded"
    FAILED = "failed", "Some job is dead"


class Event(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=100, db_index=True)
    payload = models.JSONField()
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    status = models.CharField(max_length=16, choices=EventStatus.choices,
                              default=EventStatus.PENDING)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    api_key = models.ForeignKey("access.ApiKey", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="events")
    # NULL, not "": the partial unique constraint below must ignore events without a key.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_hash = models.CharField(max_length=64, blank=True, default="")
    correlation_id = models.CharField(max_length=64, blank=True, default="", db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="event_idempotency_key_per_api_key",
            )
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="event_status_created")]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class BatchPublish(models.Model):
    """A batch publish made with an Idempotency-Key: what a retry of it must answer.

    The whole batch is one idempotent request. The unique constraint decides between two
    requests with the same key (the loser reads the winner's row), and the event ids are kept
    in the order of the request, so a replay lists the events as the first answer did. A batch
    without a key leaves no row here.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    api_key = models.ForeignKey("access.ApiKey", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="batch_publishes")
    idempotency_key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    event_ids = models.JSONField(help_text="The batch's event ids, in the request's order.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "idempotency_key"],
                                    name="batch_publish_idempotency_key_per_api_key")
        ]

    def __str__(self) -> str:
        return f"batch {self.idempotency_key} ({len(self.event_ids)} events)"

"""The outbox (Event), its work (Job) and every attempt at that work (JobAttempt).

The database is the source of truth and the dead-letter store: a job's status, attempts and
last error live here, so nothing depends on what the broker happens to hold.
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


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


TERMINAL_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED)
RUNNABLE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RETRYING)
REPLAYABLE_JOB_STATUSES = (JobStatus.DEAD, JobStatus.CANCELLED)


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
    api_key = models.ForeignKey("common.ApiKey", null=True, blank=True,
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


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False,
                          help_text="Also the Celery task id when the job travels alone; a "
                          "micro-batch message has its own id and lists the job ids.")
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="jobs")
    kind = models.CharField(max_length=64, db_index=True)
    handler = models.CharField(max_length=100, blank=True, default="")
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts in the current run.")
    max_attempts = models.PositiveIntegerField()
    replays = models.PositiveIntegerField(default=0, help_text="Times an operator replayed it.")
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True, help_text="Last error: type and message.")
    traceback = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    run_at = models.DateTimeField(null=True, blank=True, help_text="Not before this time.")
    enqueued_at = models.DateTimeField(null=True, blank=True,
                                       help_text="Last hand-over to the broker.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")
    api_key = models.ForeignKey("common.ApiKey", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="jobs")
    correlation_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "handler"],
                condition=Q(event__isnull=False),
                name="job_one_per_event_handler",
            )
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="job_status_created"),
            models.Index(fields=["kind", "created_at"], name="job_kind_created"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"


class AttemptOutcome(models.TextChoices):
    SUCCEEDED = "succeeded"
    RETRY = "retry", "Failed, will retry"
    FAILED = "failed", "Failed, gave up"
    LOST = "lost", "Worker vanished"


class JobAttempt(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_log")
    run = models.PositiveIntegerField(default=0, help_text="0, then n after n replays.")
    number = models.PositiveIntegerField(help_text="Attempt number within its run.")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    error_type = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["job", "run", "number"]
        indexes = [models.Index(fields=["job", "run", "number"], name="attempt_job_run_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}: {self.outcome}"

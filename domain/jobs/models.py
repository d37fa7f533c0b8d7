"""Work (Job) and every attempt at it (JobAttempt).

The database is the source of truth and the dead-letter store: a job's status, attempts and
last error live here, so nothing depends on what the broker happens to hold.

A job made by an event points at it: `event` is a foreign key named by string, so the table
keeps its constraint and deleting an event deletes its jobs. That declaration is the one place
this app names events: its code reads only `event_id`, never imports domain/events and never
queries through the link (tests/test_layout.py checks both); what a job's change does to its
event, and which jobs came from events of a type, go through domain/jobs/hooks.py.
"""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


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


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False,
                          help_text="Also the Celery task id when the job travels alone; a "
                          "micro-batch message has its own id and lists the job ids.")
    event = models.ForeignKey("events.Event", null=True, blank=True, on_delete=models.CASCADE,
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
    lease_expires_at = models.DateTimeField(
        null=True, blank=True,
        help_text="While running: the worker renews this; once it has lapsed, the worker is "
        "taken for dead and the job runs again.")
    api_key = models.ForeignKey("access.ApiKey", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="jobs")
    correlation_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        # The table keeps the name it had when jobs lived in domain/events, so existing
        # databases move over with no copy (migrations: jobs.0001, events.0004).
        db_table = "events_job"
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
            # The orphan rescue's query, every few seconds: only running jobs, by lease.
            models.Index(fields=["lease_expires_at"], condition=Q(status="running"),
                         name="job_running_lease"),
            # "Why isn't this job running?": the jobs of a queue's kinds handed over before
            # one job and not started (selectors.jobs_sent_before), a range of this small
            # index whatever the size of the table (1.3 ms at the front of a 250,000-job
            # backlog in a 3,000,000-row table, against 113-445 ms without it). Built
            # concurrently (migration 0004).
            models.Index(fields=["kind", "enqueued_at"],
                         condition=Q(status__in=["queued", "retrying"]),
                         name="job_waiting_kind_enqueued"),
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
        db_table = "events_jobattempt"  # as Job's: the name from before the move
        ordering = ["job", "run", "number"]
        indexes = [models.Index(fields=["job", "run", "number"], name="attempt_job_run_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}: {self.outcome}"


class QueuePause(models.Model):
    """A paused queue: while this row exists, workers do not consume the queue, the claim gives
    its messages back unclaimed (no attempt used) and the outbox relay holds its jobs.

    A row, not only Celery's `cancel_consumer`, which a worker forgets when it restarts: a
    worker reads these rows when it starts and every few seconds (workers/steering.py). Pause
    and resume through domain/jobs/services.py (`queue_pause`, `queue_resume`), which record
    the operator's action in the audit log and tell the running workers at once."""

    queue = models.CharField(max_length=64, primary_key=True,
                             help_text="The queue's name (workers/queues.py).")
    paused_at = models.DateTimeField(default=timezone.now)
    paused_by = models.CharField(max_length=200, blank=True, default="",
                                 help_text="Who paused it, as the audit log names them.")
    reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["queue"]

    def __str__(self) -> str:
        return f"{self.queue} (paused)"


class QueueResume(models.Model):
    """When a queue was last resumed: the outbox relay counts a job's hand-over from here.

    A job handed to the broker before or during a pause waited on a paused queue; it was not
    lost, and the relay must not send it again once OUTBOX_STALE_SECONDS have passed since its
    own hand-over (a second message for each job of a long pause, just when its backlog
    drains). Rewriting every waiting job's `enqueued_at` at the resume would do the same in
    one statement over the whole backlog, inside the operator's request (measured: 10 s for
    500,000 jobs, each row locked); one row per queue costs nothing, whatever the backlog."""

    queue = models.CharField(max_length=64, primary_key=True)
    resumed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.queue} (resumed {self.resumed_at:%Y-%m-%d %H:%M:%S})"

"""A bulk run: one named operation changing many rows in keyset chunks, with its checkpoint.

The run row is the whole truth about how far it got: each chunk's writes and the run's
checkpoint (the last key done, the counters) commit in one transaction, so after a crash the
run resumes exactly after the last committed chunk and no chunk is applied twice.
"""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class BulkRunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A run in one of these holds its target: a second run on the same rows is refused (409).
HOLDING_STATUSES = (BulkRunStatus.QUEUED, BulkRunStatus.RUNNING, BulkRunStatus.PAUSED)
FINISHED_STATUSES = (BulkRunStatus.SUCCEEDED, BulkRunStatus.FAILED, BulkRunStatus.CANCELLED)


class BulkRequest(models.TextChoices):
    """What an operator asked of a running run; honoured at the next chunk boundary."""

    NONE = "", "Nothing"
    PAUSE = "pause"
    CANCEL = "cancel"


class BulkRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    operation = models.CharField(max_length=100, db_index=True,
                                 help_text="A registered operation's name.")
    args = models.JSONField(default=dict, help_text="As the client sent them.")
    plan = models.JSONField(default=dict, help_text="The args resolved when the run was "
                            "made (a cutoff instant, a factor): every chunk uses the same.")
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=BulkRunStatus.choices,
                              default=BulkRunStatus.QUEUED)
    requested = models.CharField(max_length=16, choices=BulkRequest.choices, blank=True,
                                 default=BulkRequest.NONE)
    target = models.CharField(  # noqa: DJ001 - NULL: a dry run holds no target (unique)
        max_length=200, null=True, blank=True,
        help_text="The rows it holds while queued, running or paused (a dry run holds none).")
    # Chunking and throttling.
    chunk_size = models.PositiveIntegerField(help_text="The next chunk's size (adaptive).")
    adaptive = models.BooleanField(default=True, help_text="Whether the chunk size follows "
                                   "target_chunk_seconds.")
    target_chunk_seconds = models.FloatField()
    pause_seconds = models.FloatField(help_text="The pause between chunks.")
    lock_timeout_seconds = models.FloatField()
    # Where it is.
    checkpoint = models.CharField(max_length=200, blank=True, default="",
                                  help_text="The last key done ('' before the first chunk).")
    rows_matched = models.BigIntegerField(null=True, blank=True,
                                          help_text="Rows to visit, counted at the start.")
    rows_done = models.BigIntegerField(default=0, help_text="Rows visited.")
    rows_changed = models.BigIntegerField(default=0, help_text="Rows written (a dry run: "
                                          "that would be written).")
    chunks_done = models.PositiveIntegerField(default=0)
    lock_retries = models.PositiveIntegerField(default=0, help_text="Chunks given back "
                                               "because rows were locked by others.")
    elapsed_seconds = models.FloatField(default=0.0, help_text="Time spent running chunks.")
    input_table = models.CharField(max_length=63, blank=True, default="",
                                   help_text="Where a CSV run's rows wait (dropped at the end).")
    input_rows = models.PositiveIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True,
                              help_text="What the operation reported when it finished.")
    last_error = models.JSONField(null=True, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+", help_text="The job carrying it now (or last).")
    api_key = models.ForeignKey("access.ApiKey", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="bulk_runs")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_hash = models.CharField(max_length=64, blank=True, default="",
                                    help_text="What the Idempotency-Key's replays must match "
                                    "(a CSV run's includes its body's digest).")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now,
                                      help_text="The last chunk's commit, or status change.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Two runs on overlapping rows never interleave: the second is refused while the
            # first holds its target (queued, running or paused). The database decides, so
            # two requests at the same instant cannot both get in.
            models.UniqueConstraint(fields=["target"], condition=Q(status__in=HOLDING_STATUSES),
                                    name="bulkrun_one_holder_per_target"),
            models.UniqueConstraint(fields=["api_key", "idempotency_key"],
                                    condition=Q(idempotency_key__isnull=False),
                                    name="bulkrun_idempotency_key"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="bulkrun_status_created")]

    def __str__(self) -> str:
        return f"{self.operation} {self.id} ({self.status})"

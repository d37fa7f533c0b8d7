"""The run ledger: one row per (schedule, slot), written before the task body runs."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class RunOutcome(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class SkipReason(models.TextChoices):
    OVERLAP = "overlap", "The previous run still held the schedule's lock"
    LOCK_UNAVAILABLE = "lock_unavailable", "Redis could not be asked for the lock"
    MISSED = "missed", "Beat was not running at the slot and the schedule skips missed runs"
    EXPIRED = "expired", "The message waited in the queue past the schedule's expiry"
    BUSY = "busy", "What it would change was held by another run"


class RunTrigger(models.TextChoices):
    BEAT = "beat", "Beat, at the slot"
    MANUAL = "manual", "An operator: run now"


class ScheduleRun(models.Model):
    id = models.BigAutoField(primary_key=True)
    schedule = models.CharField(max_length=100, help_text="The name declared in "
                                "scheduler/schedules.py (no `conveyor:` prefix).")
    slot = models.DateTimeField(help_text="The instant the run was due (UTC); an operator's "
                                "run-now is due when it was asked for.")
    trigger = models.CharField(max_length=8, choices=RunTrigger.choices,
                               default=RunTrigger.BEAT)
    outcome = models.CharField(max_length=16, choices=RunOutcome.choices,
                               default=RunOutcome.RUNNING)
    reason = models.CharField(max_length=20, choices=SkipReason.choices, blank=True,
                              default="", help_text="Why a skipped slot did not run.")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")
    task_id = models.CharField(max_length=255, blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["schedule", "-slot"]
        constraints = [
            # The heart of the ledger: a second Beat, a redelivered message or a retry of the
            # same slot finds this row and does nothing. Per trigger: an operator's run-now in
            # the very second of a Beat slot is a run of its own, not that slot's duplicate.
            models.UniqueConstraint(fields=["schedule", "slot", "trigger"],
                                    name="schedulerun_one_per_slot"),
        ]
        indexes = [
            # Finding runs a vanished worker left `running`, per schedule.
            models.Index(fields=["schedule", "started_at"], condition=Q(outcome="running"),
                         name="schedulerun_running"),
        ]

    def __str__(self) -> str:
        label = f"{self.outcome}: {self.reason}" if self.reason else self.outcome
        return f"{self.schedule} @ {self.slot:%Y-%m-%d %H:%M:%S} ({label})"


class OperatorDashboard(models.Model):
    """No table: the holder of the operator dashboard's permissions (Django attaches a
    permission to a model). `view_dashboard` shows the page, `operate` lets its forms act;
    the two roles' groups are declared in scheduler/dashboard/roles.py."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_dashboard", "Can view the operator dashboard"),
            ("operate", "Can act from the operator dashboard (replay, pause, resume)"),
        ]

    def __str__(self) -> str:
        return "operator dashboard"

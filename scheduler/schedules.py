"""Periodic jobs, declared in code and synced into django-celery-beat's tables.

Every entry has `expires`: a tick that waited longer than that in the queue is dropped rather
than run late, so a backlog never turns into a burst of stale maintenance runs. `missed` says
what Beat does with a slot it was not running for (it was down, or starting): `skip` records
the slot `skipped: missed` and waits for the next one; `run_once` runs it once, late — never
once per missed slot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from django.conf import settings

from scheduler.slots import Cron, Every, Spec, zone

Missed = Literal["skip", "run_once"]
# django-celery-beat's rows for the schedules below are named "conveyor:<name>".
MANAGED_PREFIX = "conveyor:"
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    reason: str  # plain words: why this runs, shown in the admin and the API
    every_seconds: int | None = None
    cron: str | None = None  # "minute hour day_of_month month_of_year day_of_week"
    timezone: str = "UTC"  # the zone the cron fields are read in
    expires_seconds: int = 60
    missed: Missed = "skip"
    lock_ttl: int = 60  # seconds the overlap lock lives if its holder vanishes
    enabled: bool = True

    def __post_init__(self) -> None:
        if (self.every_seconds is None) == (self.cron is None):
            raise ValueError(f"{self.name}: give exactly one of every_seconds and cron")
        if self.missed not in ("skip", "run_once"):
            raise ValueError(f"{self.name}: missed is skip or run_once")
        zone(self.timezone)
        self.spec.next(_EPOCH)  # parses the cron fields: InvalidSchedule if they are wrong

    @property
    def spec(self) -> Spec:
        if self.cron is not None:
            return Cron.parse(self.cron, self.timezone)
        return Every(self.every_seconds)


SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        name="outbox-relay",
        task="conveyor.maintenance.relay_outbox",
        every_seconds=5,
        expires_seconds=5,
        lock_ttl=120,
        reason="Enqueue events and jobs committed while the broker was unreachable, and "
        "delayed jobs that are now due.",
    ),
    Schedule(
        name="orphan-rescue",
        task="conveyor.maintenance.rescue_orphans",
        every_seconds=5,
        expires_seconds=5,
        lock_ttl=30,
        reason="Run again the jobs whose worker died (kill -9, OOM, a lost machine): their "
        "lease lapsed. One indexed query on running jobs.",
    ),
    Schedule(
        name="queue-health",
        task="conveyor.maintenance.queue_health",
        cron="* * * * *",
        expires_seconds=50,
        lock_ttl=60,
        reason="Queue depths, the age of the oldest due job of each kind and the workers "
        "consuming each queue: logged, kept for the metrics endpoint and in this ledger.",
    ),
    Schedule(
        name="customers-deactivate-inactive",
        task="conveyor.maintenance.deactivate_inactive_customers",
        cron="15 2 * * *",
        timezone="UTC",
        expires_seconds=6 * 3600,
        missed="run_once",
        lock_ttl=600,
        reason="Start the bulk run that deactivates customers inactive for "
        "CUSTOMERS_INACTIVE_DAYS (they are sent nothing). A night Beat was down runs once, "
        "late; a run still going from the night before makes this one `skipped: busy`.",
    ),
    Schedule(
        name="retention-prune",
        task="conveyor.maintenance.prune",
        cron="30 3 * * *",
        expires_seconds=6 * 3600,
        missed="run_once",
        # Outlives the task's hard limit (PRUNE_MAX_SECONDS + 120, tasks/maintenance.py).
        lock_ttl=settings.PRUNE_MAX_SECONDS + 180,
        reason="Delete what is past its retention (RETENTION_* settings): finished jobs and "
        "their attempts, events with no job left, task results, settled deliveries, finished "
        "bulk runs and their input tables, old ledger rows; in short batches by primary-key "
        "ranges, resumed by the next run if PRUNE_MAX_SECONDS runs out.",
    ),
)


def declared(name: str) -> Schedule | None:
    return _BY_NAME.get(name)


def periodic_task_name(name: str) -> str:
    """django-celery-beat's row name for the schedule `name`."""
    return MANAGED_PREFIX + name


def schedule_name(periodic_task: str) -> str:
    """The schedule's name from its django-celery-beat row name."""
    return periodic_task.removeprefix(MANAGED_PREFIX)


_BY_NAME = {schedule.name: schedule for schedule in SCHEDULES}

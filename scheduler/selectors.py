"""Reading schedules: the declaration in code, the row operators edit (django-celery-beat's
PeriodicTask), the last run in the ledger, and the next slot."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from domain.common.errors import NotFound
from scheduler.beat import spec_of
from scheduler.models import RunOutcome, ScheduleRun
from scheduler.schedules import (
    SCHEDULES,
    Schedule,
    declared,
    periodic_task_name,
    schedule_name,
)
from scheduler.slots import Cron, InvalidSchedule, Spec


@dataclass(frozen=True)
class ScheduleState:
    declaration: Schedule
    task: PeriodicTask | None  # None until the schedules are synced
    spec: Spec | None  # as Beat reads the row (an operator's edit included); None: unreadable
    last_run: ScheduleRun | None
    next_run: dt.datetime | None

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def enabled(self) -> bool:
        return bool(self.task and self.task.enabled)

    @property
    def kind(self) -> str:
        if self.task is not None:
            return "cron" if self.task.crontab_id is not None else "interval"
        return "cron" if self.declaration.cron else "interval"

    @property
    def expression(self) -> str:
        """Cron fields, or `every Ns`."""
        return self.spec.expression if self.spec is not None else ""

    @property
    def timezone(self) -> str:
        return self.spec.timezone if isinstance(self.spec, Cron) else "UTC"

    @property
    def edited(self) -> bool:
        """The row's schedule differs from the code's: an operator changed it in the admin."""
        return self.spec is not None and self.spec != self.declaration.spec


def _state(schedule: Schedule, task: PeriodicTask | None, now: dt.datetime) -> ScheduleState:
    if task is None:
        spec = schedule.spec
    else:
        try:
            spec = spec_of(task)
        except InvalidSchedule:
            spec = None
    enabled = task is not None and task.enabled
    last = ScheduleRun.objects.filter(schedule=schedule.name).order_by("-slot", "-id").first()
    upcoming = spec.next(now) if enabled and spec is not None else None
    return ScheduleState(schedule, task, spec, last, upcoming)


def _tasks(names: list[str]) -> dict[str, PeriodicTask]:
    rows = PeriodicTask.objects.filter(name__in=[periodic_task_name(n) for n in names]) \
        .select_related("crontab", "interval")
    return {schedule_name(row.name): row for row in rows}


def schedule_declared(name: str) -> Schedule:
    """The schedule the code declares under `name`; 404 for any other name."""
    schedule = declared(name)
    if schedule is None:
        raise NotFound(f"No schedule is named {name!r}.", details={"schedule": name})
    return schedule


def schedule_list(*, now: dt.datetime | None = None) -> list[ScheduleState]:
    now = now or timezone.now()
    tasks = _tasks([schedule.name for schedule in SCHEDULES])
    return [_state(schedule, tasks.get(schedule.name), now) for schedule in SCHEDULES]


def schedule_get(name: str, *, now: dt.datetime | None = None) -> ScheduleState:
    schedule = schedule_declared(name)
    return _state(schedule, _tasks([name]).get(name), now or timezone.now())


def schedule_runs(name: str, *, outcome: str | None = None,
                  trigger: str | None = None) -> QuerySet[ScheduleRun]:
    schedule_declared(name)
    runs = ScheduleRun.objects.filter(schedule=name)
    if outcome:
        runs = runs.filter(outcome=outcome)
    if trigger:
        runs = runs.filter(trigger=trigger)
    return runs


QUEUE_HEALTH = "queue-health"


def queue_depth_history(*, since: dt.datetime,
                        until: dt.datetime | None = None) -> list[tuple[dt.datetime, dict]]:
    """[(slot, {queue: depth or None})] from the queue health check's ledger rows in
    [since, until), oldest first: one a minute (workers/health.py keeps the snapshot as the
    run's result). A range of the ledger's unique (schedule, slot, trigger) index."""
    runs = ScheduleRun.objects.filter(schedule=QUEUE_HEALTH, slot__gte=since,
                                      outcome=RunOutcome.SUCCEEDED)
    if until is not None:
        runs = runs.filter(slot__lt=until)
    history = []
    for slot, result in runs.order_by("slot", "id").values_list("slot", "result"):
        queues = (result or {}).get("queues") if isinstance(result, dict) else None
        if isinstance(queues, dict):
            history.append((slot, {name: facts.get("depth") if isinstance(facts, dict) else None
                                   for name, facts in queues.items()}))
    return history

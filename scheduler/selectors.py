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
from scheduler.models import ScheduleRun
from scheduler.schedules import MANAGED_PREFIX, SCHEDULES, Schedule, declared
from scheduler.slots import InvalidSchedule


@dataclass(frozen=True)
class ScheduleState:
    declaration: Schedule
    task: PeriodicTask | None  # None until the schedules are synced
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
        """Cron fields, or `every Ns`: as Beat reads it (an operator's edit included)."""
        spec = self._spec()
        return spec.expression if spec is not None else ""

    @property
    def timezone(self) -> str:
        if self.task is not None and self.task.crontab_id is not None:
            return str(self.task.crontab.timezone)
        return self.declaration.timezone if self.declaration.cron else "UTC"

    @property
    def edited(self) -> bool:
        """The row's schedule differs from the code's: an operator changed it in the admin."""
        spec = self._spec()
        return spec is not None and spec != self.declaration.spec

    def _spec(self):
        if self.task is None:
            return self.declaration.spec
        try:
            return spec_of(self.task)
        except InvalidSchedule:
            return None


def _state(schedule: Schedule, task: PeriodicTask | None, now: dt.datetime) -> ScheduleState:
    last = ScheduleRun.objects.filter(schedule=schedule.name).order_by("-slot", "-id").first()
    state = ScheduleState(schedule, task, last, None)
    spec = state._spec()
    upcoming = spec.next(now) if state.enabled and spec is not None else None
    return ScheduleState(schedule, task, last, upcoming)


def _tasks(names: list[str]) -> dict[str, PeriodicTask]:
    rows = PeriodicTask.objects.filter(name__in=[MANAGED_PREFIX + n for n in names]) \
        .select_related("crontab", "interval")
    return {row.name.removeprefix(MANAGED_PREFIX): row for row in rows}


def schedule_list(*, now: dt.datetime | None = None) -> list[ScheduleState]:
    now = now or timezone.now()
    tasks = _tasks([schedule.name for schedule in SCHEDULES])
    return [_state(schedule, tasks.get(schedule.name), now) for schedule in SCHEDULES]


def schedule_get(name: str, *, now: dt.datetime | None = None) -> ScheduleState:
    schedule = declared(name)
    if schedule is None:
        raise NotFound(f"No schedule is named {name!r}.", details={"schedule": name})
    return _state(schedule, _tasks([name]).get(name), now or timezone.now())


def schedule_runs(name: str, *, outcome: str | None = None,
                  trigger: str | None = None) -> QuerySet[ScheduleRun]:
    schedule_get(name)  # 404 for a name the code does not declare
    runs = ScheduleRun.objects.filter(schedule=name)
    if outcome:
        runs = runs.filter(outcome=outcome)
    if trigger:
        runs = runs.filter(trigger=trigger)
    return runs

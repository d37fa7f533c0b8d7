"""Copy the schedules declared in code into django-celery-beat's tables.

Operators may edit or pause a schedule in the admin; a re-sync keeps their edits (schedule,
time zone and enabled flag) unless `reset=True`. It runs after every `migrate` too
(scheduler/apps.py). The task name, queue and expiry always follow the
code, since the code is what defines what runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

from scheduler.schedules import MANAGED_PREFIX, SCHEDULES, Schedule, periodic_task_name
from workers.queues import queue_for_task


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    disabled_stale: list[str] = field(default_factory=list)


def _schedule_kwargs(schedule: Schedule) -> dict:
    if schedule.every_seconds is not None:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=schedule.every_seconds, period=IntervalSchedule.SECONDS)
        return {"interval": interval, "crontab": None}
    minute, hour, day_of_month, month_of_year, day_of_week = schedule.cron.split()
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
        day_of_week=day_of_week, timezone=schedule.timezone)
    return {"interval": None, "crontab": crontab}


@transaction.atomic
def schedules_sync(*, schedules: tuple[Schedule, ...] = SCHEDULES, reset: bool = False
                   ) -> SyncReport:
    report = SyncReport()
    declared = set()
    for schedule in schedules:
        name = periodic_task_name(schedule.name)
        declared.add(name)
        code_fields = {
            "task": schedule.task,
            "queue": queue_for_task(schedule.task),
            "expire_seconds": schedule.expires_seconds,
            "description": schedule.reason,
            "kwargs": json.dumps({}),
        }
        task = PeriodicTask.objects.filter(name=name).first()
        if task is None:
            PeriodicTask.objects.create(name=name, enabled=schedule.enabled,
                                        **_schedule_kwargs(schedule), **code_fields)
            report.created.append(name)
            continue
        operator_fields = {"enabled": schedule.enabled, **_schedule_kwargs(schedule)} if reset \
            else {}
        changes = {k: v for k, v in {**code_fields, **operator_fields}.items()
                   if getattr(task, k) != v}
        if changes:
            for key, value in changes.items():
                setattr(task, key, value)
            task.save()
            report.updated.append(name)
        else:
            report.kept.append(name)
    # A schedule removed from the code stops running, but its row stays for the record.
    stale = PeriodicTask.objects.filter(name__startswith=MANAGED_PREFIX, enabled=True).exclude(
        name__in=declared)
    report.disabled_stale = list(stale.values_list("name", flat=True))
    stale.update(enabled=False)
    PeriodicTasks.update_changed()
    return report

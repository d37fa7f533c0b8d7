"""Steering schedules: pause, resume, run now.

Pause and resume flip django-celery-beat's `enabled` flag, as the admin's switch does, and
tell Beat the schedule changed; a re-sync keeps the flag (scheduler/sync.py). Run-now sends the
schedule's task with a slot of its own (the second it was asked for, trigger `manual`): it
runs through the same ledger and overlap lock as Beat's runs, paused or not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from celery import current_app
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from domain.common.errors import ApplicationError
from scheduler.ledger import manual_slot, slot_headers
from scheduler.models import RunTrigger
from scheduler.schedules import periodic_task_name
from scheduler.selectors import ScheduleState, schedule_declared, schedule_get
from workers.queues import queue_for_task


class ScheduleNotSynced(ApplicationError):
    status_code = 409
    code = "schedule_not_synced"


class BrokerUnavailable(Exception):
    """The run-now message could not be handed to the broker; nothing was sent."""


@dataclass(frozen=True)
class RunNow:
    schedule: str
    slot: dt.datetime
    task_id: str


def _set_enabled(name: str, enabled: bool) -> ScheduleState:
    schedule_declared(name)
    # As PeriodicTask.save() does for the admin's switch: a paused task forgets its last run,
    # and Beat then counts a resumed one from `date_changed`, so the slots that passed while
    # it was paused are not owed (not run late, not recorded missed).
    changes = {"enabled": enabled, "date_changed": timezone.now(), "last_run_at": None}
    with transaction.atomic():
        rows = PeriodicTask.objects.filter(name=periodic_task_name(name))
        exists = rows.filter(enabled=not enabled).update(**changes) or rows.exists()
        if not exists:
            raise ScheduleNotSynced(f"The schedule {name!r} is not in django-celery-beat's "
                                    "tables yet: run `manage.py sync_schedules`.",
                                    details={"schedule": name})
        # .update() skips PeriodicTask.save(), which is what tells Beat to reload.
        PeriodicTasks.update_changed()
    return schedule_get(name)


def schedule_pause(*, name: str) -> ScheduleState:
    return _set_enabled(name, False)


def schedule_resume(*, name: str) -> ScheduleState:
    return _set_enabled(name, True)


def schedule_run_now(*, name: str, now: dt.datetime | None = None) -> RunNow:
    schedule = schedule_declared(name)
    slot = manual_slot(now)
    try:
        with current_app.connection_for_write() as conn:
            # One connection attempt: an operator waiting on a dead broker hears so in about
            # two seconds (the socket's connect timeout), not after Celery's three.
            conn.ensure_connection(max_retries=1)
            result = current_app.send_task(
                schedule.task, queue=queue_for_task(schedule.task), connection=conn,
                headers={**slot_headers(slot, RunTrigger.MANUAL),
                         "periodic_task_name": periodic_task_name(name)},
                retry=False)
    except (KombuError, RedisError, OSError) as exc:  # refused, reset, timed out
        raise BrokerUnavailable(str(exc)) from exc
    return RunNow(schedule=name, slot=slot, task_id=result.id)

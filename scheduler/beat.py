"""Beat's scheduler: django-celery-beat's DatabaseScheduler, with slots.

`celery -A config beat -S scheduler.beat:LedgerScheduler` (config/settings: CELERY_BEAT_SCHEDULER).
What it adds to django-celery-beat, and why:

- A cron or interval schedule is due by its *slot* (`scheduler/slots.py`), the same instant in
  every Beat, evaluated in the schedule's time zone (the crontab row's `timezone`, which an
  operator may edit in the admin), and each message carries its slot in a header. The worker's
  ledger (`scheduler/ledger.py`) then keeps one run per slot, however many Beats sent it.
- The missed-run policy of the schedule's declaration: a slot found later than its expiry (Beat
  was down, or starting) is recorded `skipped: missed` for `skip`, or sent once, late, for
  `run_once`. Never once per missed slot.
- Every enabled cron schedule is loaded, whatever the hour (django-celery-beat loads only
  those due within about two hours, which loses a missed `run_once` night).
- A liveness file touched after every tick (`BEAT_HEARTBEAT_FILE`, scheduler/heartbeat.py),
  which the container's healthcheck reads: Beat has no probe of its own.
- No `celery.backend_cleanup` entry: the daily retention prune deletes old task results in
  batches (django-celery-results' cleanup is one DELETE of every expired row).

Solar and clocked schedules made in the admin keep django-celery-beat's behaviour.
"""

from __future__ import annotations

import datetime as dt
import logging
from types import SimpleNamespace

from celery.schedules import BaseSchedule, schedstate
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import (
    SCHEDULE_SYNC_MAX_INTERVAL,
    DatabaseScheduler,
    ModelEntry,
)

from scheduler.heartbeat import heartbeat_touch
from scheduler.ledger import ledger_record_skip, slot_headers
from scheduler.models import SkipReason
from scheduler.schedules import Schedule, declared, schedule_name
from scheduler.slots import Cron, Every, InvalidSchedule, Spec

logger = logging.getLogger(__name__)

NEVER_DUE = 24 * 3600.0  # seconds Beat may wait before asking again about a schedule with no slot
# Celery wakes 10 ms before the time it is given (Scheduler.adjust); asked to wake this much
# after the slot, it wakes just after it instead of ticking in a loop for the last 10 ms.
WAKE_MARGIN = 0.011
_PERIOD_SECONDS = {IntervalSchedule.DAYS: 86400, IntervalSchedule.HOURS: 3600,
                   IntervalSchedule.MINUTES: 60, IntervalSchedule.SECONDS: 1,
                   IntervalSchedule.MICROSECONDS: 1e-6}


def spec_of(task: PeriodicTask) -> Spec | None:
    """The slots of a periodic task's row (operators' edits included); None for solar and
    clocked schedules."""
    if task.crontab_id is not None:
        crontab = task.crontab
        return Cron(crontab.minute, crontab.hour, crontab.day_of_month, crontab.month_of_year,
                    crontab.day_of_week, timezone=str(crontab.timezone or "UTC"))
    if task.interval_id is not None:
        interval = task.interval
        return Every(max(1, round(interval.every * _PERIOD_SECONDS[interval.period])))
    return None


class SlotSchedule(BaseSchedule):
    """Due when a slot has come since the entry last sent."""

    def __init__(self, spec: Spec, *, nowfun, app=None):
        super().__init__(nowfun=nowfun, app=app)
        self.spec = spec

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        now = self.now()
        upcoming = self.spec.next(now)
        wait = NEVER_DUE if upcoming is None else (
            max(0.0, (upcoming - now).total_seconds()) + WAKE_MARGIN)
        slot = self.spec.latest(now)
        return schedstate(slot is not None and slot > last_run_at, wait)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        now = self.now()
        upcoming = self.spec.next(now)
        return dt.timedelta(seconds=NEVER_DUE) if upcoming is None else upcoming - now

    def __repr__(self) -> str:
        return f"<slots {self.spec.expression}>"

    def __eq__(self, other) -> bool:
        return isinstance(other, SlotSchedule) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)


class LedgerEntry(ModelEntry):
    def __init__(self, model, app=None):
        super().__init__(model, app=app)
        self.declaration: Schedule | None = declared(schedule_name(model.name))
        try:
            spec = spec_of(model)
        except (InvalidSchedule, KeyError) as exc:
            logger.error("schedule %s keeps django-celery-beat's evaluation: %s", model.name,
                         exc)
            spec = None
        if spec is not None:
            self.schedule = SlotSchedule(spec, nowfun=self._default_now, app=self.app)


class LedgerScheduler(DatabaseScheduler):
    Entry = LedgerEntry

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        # After the tick: a Beat stuck inside one stops touching the file (scheduler/heartbeat.py).
        if settings.BEAT_HEARTBEAT_FILE:
            heartbeat_touch(settings.BEAT_HEARTBEAT_FILE)
        return interval

    def all_as_schedule(self):
        # django-celery-beat guards its change check and its sync against a database outage,
        # not the reload itself (forced every 5 minutes): the error left tick() and Beat
        # exited. Keep the schedule Beat has and try the reload again at the next tick.
        try:
            return super().all_as_schedule()
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("schedules not reloaded, the database did not answer; keeping the "
                           "%d loaded error=%r", len(getattr(self, "_schedule", None) or {}),
                           exc)
            close_old_connections()
            self._initial_read = True  # reload at the next tick
            return getattr(self, "_schedule", None) or {}

    def enabled_models_qs(self):
        # django-celery-beat leaves out crontab tasks whose hour is more than two hours from
        # now (a saving for thousands of tasks). A schedule must be loaded whenever a slot may
        # be owed: a `run_once` night missed while Beat was down is due when Beat is back at
        # noon, and a zone's hour is not the server's. Clocked tasks far ahead still wait.
        upcoming = timezone.now() + dt.timedelta(seconds=SCHEDULE_SYNC_MAX_INTERVAL)
        return self.Model.objects.enabled().exclude(
            clocked__isnull=False, clocked__clocked_time__gt=upcoming)

    def install_default_entries(self, data) -> None:
        # Deliberately nothing: see the module docstring (celery.backend_cleanup).
        return None

    def apply_entry(self, entry, producer=None):
        schedule = entry.schedule
        if not isinstance(schedule, SlotSchedule):
            return super().apply_entry(entry, producer=producer)
        now = schedule.now()
        slot = schedule.spec.latest(now)
        if slot is None:
            return None
        name = schedule_name(entry.name)
        late = (now - slot).total_seconds()
        grace = entry.model.expire_seconds or (
            entry.declaration.expires_seconds if entry.declaration else None)
        missed = entry.declaration.missed if entry.declaration else "run_once"
        if grace is not None and late > grace and missed == "skip":
            logger.warning("skipped a missed slot schedule=%s slot=%s late_seconds=%.0f",
                           name, slot.isoformat(), late)
            try:
                ledger_record_skip(name, slot=slot, reason=SkipReason.MISSED,
                                   detail=f"Beat reached the slot {late:.0f} s late.")
            except (DatabaseError, InterfaceError):  # Beat keeps ticking through an outage
                logger.exception("the missed slot was not recorded schedule=%s", name)
            return None
        # The message is the entry's with the slot in its headers. A stand-in carries them:
        # an entry cannot be copied (ScheduleEntry.__reduce__ rebuilds it with the arguments
        # of ScheduleEntry.__init__, which a ModelEntry does not take), and the entry's own
        # options must stay without a slot.
        stamped = SimpleNamespace(
            name=entry.name, task=entry.task, args=entry.args, kwargs=entry.kwargs,
            options={**entry.options, "headers": {**entry.options.get("headers", {}),
                                                  **slot_headers(slot)}})
        return super().apply_entry(stamped, producer=producer)

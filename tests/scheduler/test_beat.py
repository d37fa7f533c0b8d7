"""The Beat scheduler (scheduler/beat.py) driven through the nights that matter, on a fake
clock: the real LedgerScheduler, its entries read from PeriodicTask rows, publishing real
messages to the broker; each message then runs the test-only probe task
(tests/scheduler/probe.py) with the headers it carries, so the ledger says what ran.

Only time is faked (`FakeClock`): the entries' `now`, and the clock django-celery-beat reads to
decide when to re-read the schedule and which crontab rows are near enough to load.
"""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable, Iterator
from zoneinfo import ZoneInfo

import django_celery_beat.schedulers as dcb_schedulers
import pytest
from django.db import connection
from django_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)
from django_celery_beat.schedulers import DatabaseScheduler

from config.celery import app
from scheduler.beat import LedgerEntry, LedgerScheduler
from scheduler.ledger import SLOT_HEADER, TRIGGER_HEADER
from scheduler.models import RunOutcome, RunTrigger, ScheduleRun, SkipReason
from scheduler.schedules import MANAGED_PREFIX
from scheduler.sync import schedules_sync
from tests.conftest import PrivateKeys, message_args
from tests.scheduler.probe import PROBE_SCHEDULE, PROBE_TASK, scheduler_probe

# The scheduler closes and reopens the test's database connection on every tick
# (django-celery-beat's close_old_connections): autocommit, as in the Beat process.
pytestmark = pytest.mark.django_db(transaction=True)

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC
STEP = dt.timedelta(seconds=60)  # Beat wakes at least this often (max_interval is 5 s)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def berlin(day: dt.date, hour: int, minute: int = 0, fold: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BERLIN).replace(
        fold=fold).astimezone(UTC)


class FakeClock:
    """The one clock Beat reads, set by the test."""

    def __init__(self) -> None:
        self.now = utc(2027, 1, 1)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # The entries' now (their SlotSchedule's nowfun, last_run_at after a send, the heap's
        # times); the app's zone is UTC.
        monkeypatch.setattr(LedgerEntry, "_default_now", lambda entry: self.now)
        # django-celery-beat: which crontab rows are loaded (its +-2 h window around the
        # current hour) and when the schedule is re-read (every 5 minutes).
        monkeypatch.setattr(dcb_schedulers, "aware_now", lambda: self.now)
        monkeypatch.setattr(dcb_schedulers, "now", lambda: self.now)
        clock = self

        class _Datetime(dt.datetime):
            @classmethod
            def now(cls, tz=None):
                return clock.now.astimezone(tz) if tz else clock.now.replace(tzinfo=None)

        monkeypatch.setattr(dcb_schedulers, "datetime",
                            types.SimpleNamespace(datetime=_Datetime, timedelta=dt.timedelta))


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    fake.install(monkeypatch)
    return fake


@pytest.fixture
def beat(private_broker: PrivateKeys, clock: FakeClock,
         monkeypatch) -> Iterator[Callable[[], LedgerScheduler]]:
    """Make LedgerSchedulers as `celery beat` does (its app, entries from the database); they
    publish under this test's own broker keys (`private_broker`)."""
    # The database connection ages as in the Beat process (config/settings/base.py): the test
    # settings' CONN_MAX_AGE=0 would reconnect at every tick (close_old_connections), some
    # 8 ms each, hundreds of times a night.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    connection.close()
    made: list[DatabaseScheduler] = []

    def make(at: dt.datetime, cls=LedgerScheduler) -> LedgerScheduler:
        # Started at `at`: a scheduler made at another time would take the jump to the first
        # tick for five minutes passed and re-read the schedule then.
        clock.now = at
        scheduler = cls(app=app)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.close()
        scheduler._finalize.cancel()  # its sync at interpreter exit, with no test database


def only(name: str, *, last_run_at: dt.datetime, cron: str | None = None,
         timezone: str = "UTC", every: int | None = None, task: str = PROBE_TASK,
         expire_seconds: int | None = 300) -> PeriodicTask:
    """The one enabled periodic task (the project's own are paused), as if Beat had last sent
    it at `last_run_at`."""
    schedules_sync()
    PeriodicTask.objects.update(enabled=False)
    if cron is not None:
        minute, hour, day_of_month, month_of_year, day_of_week = cron.split()
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
            day_of_week=day_of_week, timezone=timezone)
        when = {"crontab": crontab, "interval": None}
    else:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every,
                                                             period=IntervalSchedule.SECONDS)
        when = {"interval": interval, "crontab": None}
    row, _ = PeriodicTask.objects.update_or_create(
        name=MANAGED_PREFIX + name,
        defaults={"task": task, "queue": "maintenance", "enabled": True,
                  "expire_seconds": expire_seconds, "last_run_at": last_run_at, **when})
    PeriodicTasks.update_changed()
    return row


def run_beat(scheduler: LedgerScheduler, clock: FakeClock, start: dt.datetime,
             end: dt.datetime, step: dt.timedelta = STEP) -> None:
    """Beat's loop from `start` to `end` (inclusive) on the fake clock: at each step, tick
    until nothing more is due (a tick sends one entry and answers 0 while others wait)."""
    clock.now = start
    while clock.now <= end:
        for _ in range(20):
            if scheduler.tick() > 0:
                break
        clock.now += step


def published(keys: PrivateKeys) -> list[dict]:
    """The messages Beat published to the maintenance queue, oldest first."""
    return list(reversed(keys.messages("maintenance")))


def sent_slots(messages: list[dict]) -> list[dt.datetime]:
    return [dt.datetime.fromisoformat(m["headers"][SLOT_HEADER]) for m in messages]


def deliver(messages: list[dict]) -> None:
    """Each message to the probe task, with the headers it carries (what a worker hands
    over)."""
    for message in messages:
        headers = message["headers"]
        assert headers["task"] == PROBE_TASK
        scheduler_probe.apply(message_args(message), task_id=headers["id"], headers=headers)


def ledger(schedule: str = PROBE_SCHEDULE) -> list[tuple[dt.datetime, str, str, str]]:
    return list(ScheduleRun.objects.filter(schedule=schedule).order_by("slot")
                .values_list("slot", "trigger", "outcome", "reason"))


# --- 02:30 in Europe/Berlin: once a night, DST or not ----------------------------------------

NIGHTS = [
    # date, the one slot (UTC), what it is locally
    pytest.param(dt.date(2027, 3, 27), utc(2027, 3, 27, 1, 30), id="before-spring-cet"),
    # 02:30 does not exist: the clocks go from 02:00 CET to 03:00 CEST; it runs at 03:00 CEST
    pytest.param(dt.date(2027, 3, 28), utc(2027, 3, 28, 1, 0), id="spring-forward"),
    pytest.param(dt.date(2027, 3, 29), utc(2027, 3, 29, 0, 30), id="after-spring-cest"),
    pytest.param(dt.date(2027, 10, 30), utc(2027, 10, 30, 0, 30), id="before-fall-cest"),
    # 02:30 happens twice (03:00 CEST -> 02:00 CET): only the first, 02:30 CEST, runs
    pytest.param(dt.date(2027, 10, 31), utc(2027, 10, 31, 0, 30), id="fall-back"),
    pytest.param(dt.date(2027, 11, 1), utc(2027, 11, 1, 1, 30), id="after-fall-cet"),
]


@pytest.mark.parametrize(("night", "slot"), NIGHTS)
def test_half_past_two_in_berlin_runs_exactly_once_a_night(beat, clock, private_broker,
                                                          night, slot):
    # given "30 2 * * *" in Europe/Berlin, last sent before the night began
    start, end = berlin(night, 0), berlin(night, 5)
    only(PROBE_SCHEDULE, cron="30 2 * * *", timezone="Europe/Berlin", last_run_at=start)

    # when Beat runs from 00:00 to 05:00 local time, and the worker runs what it sent
    run_beat(beat(start), clock, start, end)
    messages = published(private_broker)
    deliver(messages)

    # then it sent the night's slot once, stamped by Beat, and the ledger has one run for it
    assert sent_slots(messages) == [slot]
    assert messages[0]["headers"][TRIGGER_HEADER] == RunTrigger.BEAT
    assert ledger() == [(slot, RunTrigger.BEAT, RunOutcome.SUCCEEDED, "")]


def test_the_spring_forward_run_is_at_three_cest_and_the_fall_back_run_the_first_half_past_two():
    # the local readings of the two DST nights' slots above, spelled out
    assert utc(2027, 3, 28, 1, 0).astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"
    fall = utc(2027, 10, 31, 0, 30).astimezone(BERLIN)
    assert (fall.strftime("%H:%M %Z"), fall.fold) == ("02:30 CEST", 0)


# --- every 30 minutes in Europe/Berlin: real time decides ------------------------------------

def test_every_thirty_minutes_runs_both_half_hours_of_the_repeated_hour_at_fall_back(
        beat, clock, private_broker):
    # given "*/30 * * * *" in Europe/Berlin
    night = dt.date(2027, 10, 31)
    start, end = berlin(night, 0), berlin(night, 5)
    only(PROBE_SCHEDULE, cron="*/30 * * * *", timezone="Europe/Berlin", last_run_at=start)

    # when Beat runs from 00:00 CEST to 05:00 CET (six real hours)
    run_beat(beat(start), clock, start, end)
    messages = published(private_broker)
    deliver(messages)

    # then every half hour of real time ran once: twelve runs, 02:00 and 02:30 twice each
    expected = [start + n * dt.timedelta(minutes=30) for n in range(1, 13)]
    assert sent_slots(messages) == expected
    assert [s for s, *_ in ledger()] == expected
    walls = [s.astimezone(BERLIN).strftime("%H:%M") for s in expected]
    assert walls.count("02:00") == 2 and walls.count("02:30") == 2
    assert {outcome for _, _, outcome, _ in ledger()} == {RunOutcome.SUCCEEDED}


def test_every_thirty_minutes_has_no_duplicate_at_three_after_spring_forward(
        beat, clock, private_broker):
    # given "*/30 * * * *" in Europe/Berlin
    night = dt.date(2027, 3, 28)
    start, end = berlin(night, 0), berlin(night, 5)
    only(PROBE_SCHEDULE, cron="*/30 * * * *", timezone="Europe/Berlin", last_run_at=start)

    # when Beat runs from 00:00 CET to 05:00 CEST (four real hours)
    run_beat(beat(start), clock, start, end)
    messages = published(private_broker)
    deliver(messages)

    # then every half hour of real time ran once; 02:00 and 02:30 do not exist, 03:00 ran once
    expected = [start + n * dt.timedelta(minutes=30) for n in range(1, 9)]
    assert sent_slots(messages) == expected
    assert [s for s, *_ in ledger()] == expected
    assert [s.astimezone(BERLIN).strftime("%H:%M") for s in expected] == [
        "00:30", "01:00", "01:30", "03:00", "03:30", "04:00", "04:30", "05:00"]


# --- the missed-run policy --------------------------------------------------------------------

def test_a_skip_schedule_reached_after_its_expiry_records_the_slot_missed_and_sends_nothing(
        beat, clock, private_broker):
    # given the outbox relay (declared `skip`, expires 5 s), which an operator slowed to once
    # a minute in the admin, and a Beat that was down for an hour
    slot = utc(2027, 5, 4, 12, 0)
    row = only("outbox-relay", every=60, task="conveyor.maintenance.relay_outbox",
               expire_seconds=5, last_run_at=slot - dt.timedelta(hours=1))
    back = slot + dt.timedelta(seconds=30)
    scheduler = beat(back)

    # when Beat comes back 30 s after a slot (later than the expiry)
    run_beat(scheduler, clock, back, back + dt.timedelta(seconds=10), step=dt.timedelta(seconds=5))

    # then it sent nothing and the ledger says that slot was missed
    assert published(private_broker) == []
    [run] = ScheduleRun.objects.filter(schedule="outbox-relay")
    assert (run.slot, run.trigger, run.outcome, run.reason) == (
        slot, RunTrigger.BEAT, RunOutcome.SKIPPED, SkipReason.MISSED)
    assert "30 s late" in run.error

    # and the next slot, reached on time, is sent, once
    run_beat(scheduler, clock, slot + dt.timedelta(seconds=61),
             slot + dt.timedelta(seconds=90), step=dt.timedelta(seconds=5))
    messages = published(private_broker)
    assert sent_slots(messages) == [slot + dt.timedelta(seconds=60)]
    assert messages[0]["headers"]["periodic_task_name"] == row.name


def test_a_run_once_schedule_sends_one_message_for_the_latest_slot_after_a_long_outage(
        beat, clock, private_broker):
    # given a schedule with no declaration (run_once), every minute, expiring after 10 s,
    # last sent three hours (180 slots) ago
    slot = utc(2027, 5, 4, 12, 0)
    only(PROBE_SCHEDULE, every=60, expire_seconds=10, last_run_at=slot - dt.timedelta(hours=3))

    # when Beat comes back 30 s after a slot and runs for 20 s
    back = slot + dt.timedelta(seconds=30)
    run_beat(beat(back), clock, back, back + dt.timedelta(seconds=20),
             step=dt.timedelta(seconds=1))
    messages = published(private_broker)
    deliver(messages)

    # then one message, for the latest slot, ran: late, once, not once per missed slot
    assert sent_slots(messages) == [slot]
    assert ledger() == [(slot, RunTrigger.BEAT, RunOutcome.SUCCEEDED, "")]


def test_a_run_once_nightly_schedule_runs_late_after_an_outage_past_its_hour(
        beat, clock, private_broker):
    # given "0 3 * * *" (UTC, run_once) last sent yesterday, and Beat down from 02:00 to 06:00
    slot = utc(2027, 5, 4, 3, 0)
    only(PROBE_SCHEDULE, cron="0 3 * * *", last_run_at=slot - dt.timedelta(days=1))

    # when Beat comes back at 06:00
    back = utc(2027, 5, 4, 6, 0)
    run_beat(beat(back), clock, back, back + dt.timedelta(minutes=10))

    # then the missed 03:00 slot is sent once, late
    assert sent_slots(published(private_broker)) == [slot]


# --- no celery.backend_cleanup ------------------------------------------------------------

@pytest.fixture
def result_expires():
    """CELERY_RESULT_EXPIRES set to a day for one test."""
    before = app.conf.result_expires
    app.conf.result_expires = dt.timedelta(days=1)
    yield app.conf.result_expires
    app.conf.result_expires = before


def test_no_backend_cleanup_entry_even_with_result_expires_set(beat, result_expires):
    # given CELERY_RESULT_EXPIRES set: django-celery-beat's own scheduler then adds a daily
    # celery.backend_cleanup row (one DELETE of every expired result)
    beat(utc(2027, 5, 4), DatabaseScheduler)
    assert PeriodicTask.objects.filter(name="celery.backend_cleanup").exists()
    PeriodicTask.objects.filter(name="celery.backend_cleanup").delete()

    # when the project's scheduler starts
    scheduler = beat(utc(2027, 5, 4))

    # then it adds none: the retention prune deletes old results in batches instead
    assert not PeriodicTask.objects.filter(name="celery.backend_cleanup").exists()
    assert "celery.backend_cleanup" not in scheduler.schedule

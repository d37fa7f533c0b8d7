import threading

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scheduler.locks import single_flight
from scheduler.schedules import SCHEDULES, Schedule
from scheduler.sync import MANAGED_PREFIX, schedules_sync

pytestmark = pytest.mark.django_db


def test_every_declared_schedule_has_expiry_reason_and_a_routed_task():
    from config.celery import app

    app.loader.import_default_modules()
    for schedule in SCHEDULES:
        assert schedule.expires_seconds > 0
        assert schedule.reason
        assert schedule.task in app.tasks, schedule.task


def test_orphan_rescue_is_scheduled():
    schedules_sync()
    task = PeriodicTask.objects.get(name=MANAGED_PREFIX + "orphan-rescue")
    assert task.task == "conveyor.maintenance.rescue_orphans" and task.expire_seconds == 5


def test_sync_creates_tasks_from_code():
    report = schedules_sync()
    assert sorted(report.created) == sorted(MANAGED_PREFIX + s.name for s in SCHEDULES)
    task = PeriodicTask.objects.get(name=MANAGED_PREFIX + "outbox-relay")
    assert task.task == "conveyor.maintenance.relay_outbox"
    assert task.queue == "maintenance"
    assert task.expire_seconds == 5
    assert task.interval.every == 5 and task.interval.period == IntervalSchedule.SECONDS
    assert task.enabled


def test_resync_keeps_operator_edits_unless_reset():
    schedules_sync()
    # an operator pauses the relay and slows it down in the admin
    task = PeriodicTask.objects.get(name=MANAGED_PREFIX + "outbox-relay")
    slow, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    task.enabled = False
    task.interval = slow
    task.save()

    report = schedules_sync()
    task.refresh_from_db()
    assert task.name in report.kept and not report.updated
    assert task.enabled is False and task.interval.every == 60

    report = schedules_sync(reset=True)
    task.refresh_from_db()
    assert report.updated == [task.name]  # only the edited one changes
    assert task.enabled is True and task.interval.every == 5


def test_schedule_removed_from_code_is_disabled_not_deleted():
    schedules_sync()
    report = schedules_sync(schedules=())
    assert sorted(report.disabled_stale) == sorted(MANAGED_PREFIX + s.name for s in SCHEDULES)
    task = PeriodicTask.objects.get(name=MANAGED_PREFIX + "outbox-relay")
    assert task.enabled is False


def test_crontab_schedules_sync():
    nightly = Schedule(name="nightly", task="conveyor.maintenance.relay_outbox",
                       cron="30 2 * * *", expires_seconds=3600, reason="test")
    schedules_sync(schedules=(nightly,))
    task = PeriodicTask.objects.get(name=MANAGED_PREFIX + "nightly")
    assert (task.crontab.minute, task.crontab.hour) == ("30", "2")
    assert task.interval is None


@pytest.mark.parametrize("kwargs", [
    {"every_seconds": 5, "cron": "* * * * *"},
    {},
    {"cron": "* * *"},
])
def test_schedule_declaration_is_checked(kwargs):
    with pytest.raises(ValueError):
        Schedule(name="bad", task="t", reason="r", **kwargs)


def test_single_flight_skips_an_overlapping_run():
    inside, release = threading.Event(), threading.Event()
    runs = []

    @single_flight("test-overlap", ttl=30)
    def job():
        runs.append(1)
        inside.set()
        release.wait(10)
        return "ran"

    first = threading.Thread(target=job)
    first.start()
    inside.wait(10)
    try:
        assert job() == {"skipped": "locked"}
    finally:
        release.set()
        first.join()
    assert runs == [1]
    # and once the first run is over, the lock is free again
    release.set()
    assert job() == "ran"


def test_single_flight_skips_the_run_when_redis_refuses_the_lock(monkeypatch, settings):
    # given a Redis that does not answer (nothing listens on port 1), through the project's
    # client
    import domain.common.redis as project_redis

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(project_redis, "_client", None)
    runs = []

    @single_flight("test-no-redis", ttl=30)
    def job():
        runs.append(1)

    # then the run is skipped (it could overlap another), and the task does not fail
    assert job() == {"skipped": "lock unavailable"}
    assert runs == []

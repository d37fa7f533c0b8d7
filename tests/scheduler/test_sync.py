import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scheduler.schedules import MANAGED_PREFIX, SCHEDULES, Schedule
from scheduler.sync import schedules_sync

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _unsynced():
    # `migrate` syncs the schedules (scheduler/apps.py), so the test database has them: start
    # each test from none (rolled back with the test).
    PeriodicTask.objects.all().delete()


def test_migrate_syncs_the_schedules():
    call_command("migrate", "scheduler", verbosity=0)
    assert set(PeriodicTask.objects.values_list("name", flat=True)) >= {
        MANAGED_PREFIX + schedule.name for schedule in SCHEDULES}


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


def test_crontab_schedules_sync_with_their_time_zone():
    nightly = Schedule(name="nightly", task="conveyor.maintenance.relay_outbox",
                       cron="30 2 * * *", timezone="Europe/Berlin", expires_seconds=3600,
                       reason="test")
    schedules_sync(schedules=(nightly,))
    task = PeriodicTask.objects.get(name=MANAGED_PREFIX + "nightly")
    assert (task.crontab.minute, task.crontab.hour) == ("30", "2")
    assert str(task.crontab.timezone) == "Europe/Berlin"
    assert task.interval is None


@pytest.mark.parametrize("kwargs", [
    {"every_seconds": 5, "cron": "* * * * *"},
    {},
    {"cron": "* * *"},
    {"cron": "61 * * * *"},
    {"cron": "0 2 * * *", "timezone": "Mars/Olympus"},
    {"every_seconds": 0},
    {"every_seconds": 5, "missed": "sometimes"},
])
def test_schedule_declaration_is_checked(kwargs):
    with pytest.raises(ValueError):
        Schedule(name="bad", task="t", reason="r", **kwargs)

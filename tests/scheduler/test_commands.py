"""`manage.py schedules`: the operator's list, runs, pause, resume and run-now from a shell."""

import datetime as dt

import pytest
from django.core.management.base import CommandError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from scheduler.models import RunOutcome, ScheduleRun, SkipReason
from scheduler.schedules import MANAGED_PREFIX
from scheduler.sync import schedules_sync
from tests.conftest import queued_messages, run_command

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _synced():
    schedules_sync(reset=True)


def test_the_list_shows_each_schedule_with_its_last_run():
    now = timezone.now()
    ScheduleRun.objects.create(schedule="orphan-rescue", slot=dt.datetime(
        2026, 11, 28, 1, 2, 5, tzinfo=dt.UTC), outcome=RunOutcome.SKIPPED,
        reason=SkipReason.OVERLAP, started_at=now, duration_ms=3)
    out, _ = run_command("schedules")
    lines = {line.split(":")[0]: line for line in out.splitlines()}
    assert "enabled, every 5s" in lines["orphan-rescue"]
    assert "last 2026-11-28 01:02:05 skipped: overlap in 3 ms" in lines["orphan-rescue"]
    assert "never ran" in lines["outbox-relay"]
    assert "15 2 * * * UTC" in lines["customers-deactivate-inactive"]


def test_pause_resume_and_runs():
    run_command("schedules", "pause", "outbox-relay")
    assert not PeriodicTask.objects.get(name=MANAGED_PREFIX + "outbox-relay").enabled
    assert "outbox-relay: PAUSED" in run_command("schedules")[0]
    run_command("schedules", "resume", "outbox-relay")
    assert PeriodicTask.objects.get(name=MANAGED_PREFIX + "outbox-relay").enabled

    now = timezone.now()
    ScheduleRun.objects.create(schedule="outbox-relay", slot=now, started_at=now,
                               outcome=RunOutcome.FAILED, error="OperationalError: gone\nmore")
    out, _ = run_command("schedules", "runs", "outbox-relay")
    assert "failed" in out and "OperationalError: gone" in out and "more" not in out


def test_run_now_sends_the_task(broker):
    out, _ = run_command("schedules", "run", "queue-health")
    assert out.startswith("queue-health: sent, slot ")
    [message] = queued_messages(broker, "maintenance")
    assert message["headers"]["task"] == "conveyor.maintenance.queue_health"


def test_an_unknown_name_is_an_error():
    with pytest.raises(CommandError, match="No schedule is named"):
        run_command("schedules", "pause", "nope")
    with pytest.raises(CommandError, match="needs a schedule name"):
        run_command("schedules", "run")

"""Operators pause and edit schedules in django-celery-beat's admin pages."""

import pytest
from django_celery_beat.models import PeriodicTask

from scheduler.sync import schedules_sync
from tests.conftest import assert_changelist_loads

pytestmark = pytest.mark.django_db


def test_the_schedule_list_loads_with_a_search(operator):
    schedules_sync()
    assert PeriodicTask.objects.exists()
    assert_changelist_loads(operator, "django_celery_beat/periodictask")


def test_the_run_ledger_list_loads_and_is_read_only(operator):
    from django.utils import timezone

    from scheduler.models import ScheduleRun

    now = timezone.now()
    ScheduleRun.objects.create(schedule="outbox-relay", slot=now, started_at=now)
    assert_changelist_loads(operator, "scheduler/schedulerun")
    assert operator.get("/admin/scheduler/schedulerun/add/").status_code == 403

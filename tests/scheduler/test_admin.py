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

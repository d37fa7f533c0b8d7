"""A schedule switched back on is due from its next slot, not from the slots it was paused
through; whichever way it was paused and switched on again (the admin, the API)."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from config.celery import app
from scheduler.beat import LedgerEntry
from scheduler.schedules import MANAGED_PREFIX
from scheduler.services import schedule_pause
from scheduler.sync import schedules_sync

pytestmark = pytest.mark.django_db

RELAY = MANAGED_PREFIX + "outbox-relay"


@pytest.fixture(autouse=True)
def _paused_an_hour_ago():
    schedules_sync(reset=True)
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    PeriodicTask.objects.filter(name=RELAY).update(last_run_at=an_hour_ago)
    schedule_pause(name="outbox-relay")
    PeriodicTask.objects.filter(name=RELAY).update(date_changed=an_hour_ago)


def _due_now() -> bool:
    return LedgerEntry(PeriodicTask.objects.get(name=RELAY), app=app).is_due().is_due


def test_while_paused_the_schedule_is_not_due():
    assert _due_now() is False


def test_enabled_again_in_the_admin_it_counts_from_now(operator):
    task = PeriodicTask.objects.get(name=RELAY)
    task.enabled = True
    task.save()  # what the admin's change form does
    assert _due_now() is False  # the slots of the paused hour are not owed


def test_resumed_through_the_api_it_counts_from_now(make_client):
    make_client(["schedules:write"]).post(reverse("schedule-resume", args=["outbox-relay"]))
    assert PeriodicTask.objects.get(name=RELAY).enabled
    assert _due_now() is False


def test_but_a_schedule_that_was_not_paused_owes_its_slot():
    # the same hour without a pause: the latest slot is due (the check above is not vacuous)
    PeriodicTask.objects.filter(name=RELAY).update(
        enabled=True, last_run_at=timezone.now() - dt.timedelta(hours=1))
    assert _due_now() is True

"""What Beat sends: the entry's message, stamped with its slot, through the real broker."""

import datetime as dt

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from config.celery import app
from scheduler.beat import LedgerEntry, LedgerScheduler
from scheduler.schedules import MANAGED_PREFIX
from scheduler.sync import schedules_sync

pytestmark = pytest.mark.django_db


def test_a_due_entry_is_sent_with_its_slot_and_the_entry_keeps_no_slot(private_broker):
    schedules_sync(reset=True)
    model = PeriodicTask.objects.get(name=MANAGED_PREFIX + "outbox-relay")
    model.last_run_at = timezone.now() - dt.timedelta(seconds=3)
    scheduler = LedgerScheduler(app=app, lazy=True)
    entry = LedgerEntry(model, app=app)

    before = timezone.now()
    scheduler.apply_entry(entry, producer=scheduler.producer)

    [message] = private_broker.messages("maintenance")
    headers = message["headers"]
    assert headers["task"] == "conveyor.maintenance.relay_outbox"
    assert headers["periodic_task_name"] == "conveyor:outbox-relay"
    slot = dt.datetime.fromisoformat(headers["conveyor_slot"])
    assert slot.timestamp() % 5 == 0 and before - dt.timedelta(seconds=5) < slot <= before
    assert headers["conveyor_trigger"] == "beat"
    assert "conveyor_slot" not in entry.options["headers"]  # the next send stamps its own

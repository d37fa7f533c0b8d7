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


def test_beat_wakes_just_after_a_slot_not_in_a_loop_before_it():
    from scheduler.beat import WAKE_MARGIN, SlotSchedule
    from scheduler.slots import Every

    just_before = dt.datetime(2027, 1, 1, 0, 0, 4, 995000, tzinfo=dt.UTC)  # 5 ms to the slot
    state = SlotSchedule(Every(5), nowfun=lambda: just_before).is_due(
        just_before - dt.timedelta(seconds=4))
    # Celery wakes 10 ms early (Scheduler.adjust): given 5 ms + the margin, it wakes after it
    assert state.is_due is False
    assert state.next == pytest.approx(0.005 + WAKE_MARGIN)
    assert state.next - 0.010 > 0.005


@pytest.mark.django_db(transaction=True)
def test_beat_keeps_ticking_when_the_database_is_down_at_its_five_minute_reload(monkeypatch):
    # django-celery-beat forces a reload every 5 minutes (all_as_schedule), unguarded: with
    # the database down its error left tick() and `celery beat` exited
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs a database server that can be made unreachable; this run uses "
                    "sqlite. Set DATABASE_URL=postgres://... to run it.")
    schedules_sync()
    scheduler = LedgerScheduler(app=app)
    try:
        scheduler.tick()  # the initial read, database up
        loaded = set(scheduler._schedule)
        monkeypatch.setitem(connection.settings_dict, "PORT", "1")  # nothing listens there
        connection.close()
        scheduler._last_full_sync -= dt.timedelta(minutes=6)

        scheduler.tick()  # does not raise

        assert set(scheduler._schedule) == loaded  # what Beat had, kept
    finally:
        monkeypatch.undo()
        connection.close()
        scheduler._finalize.cancel()
    # and once the database is back, the next tick reloads
    scheduler.tick()
    assert set(scheduler._schedule) == loaded

"""The run ledger: one row per (schedule, slot), written before the body; duplicates, overlaps,
failures and vanished workers recorded as such."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from celery import shared_task
from django.utils import timezone

from scheduler.ledger import ledger_claim, manual_slot, scheduled, slot_headers
from scheduler.locks import overlap_lock
from scheduler.models import RunOutcome, RunTrigger, ScheduleRun, SkipReason

pytestmark = pytest.mark.django_db

SLOT = dt.datetime(2027, 3, 28, 1, 0, tzinfo=dt.UTC)
calls: list[str] = []
gate = {"inside": threading.Event(), "release": threading.Event()}


@shared_task(name="tests.scheduler.ledger_probe")
@scheduled("ledger-probe", lock_ttl=30)
def ledger_probe(mode: str = "ok") -> dict:
    calls.append(mode)
    if mode == "boom":
        raise RuntimeError("the body failed")
    if mode == "hold":
        gate["inside"].set()
        gate["release"].wait(10)
    return {"done": mode}


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    gate["inside"].clear()
    gate["release"].clear()


def test_a_slot_runs_once_and_its_row_says_how_it_went():
    result = ledger_probe.apply(headers=slot_headers(SLOT)).get()
    assert result == {"done": "ok"}
    run = ScheduleRun.objects.get(schedule="ledger-probe")
    assert run.slot == SLOT and run.trigger == RunTrigger.BEAT
    assert run.outcome == RunOutcome.SUCCEEDED and run.result == {"done": "ok"}
    assert run.finished_at >= run.started_at and run.duration_ms is not None
    assert run.task_id


def test_the_same_slot_again_does_nothing():
    ledger_probe.apply(headers=slot_headers(SLOT)).get()
    again = ledger_probe.apply(headers=slot_headers(SLOT)).get()
    assert again == {"skipped": "duplicate", "slot": SLOT.isoformat()}
    assert calls == ["ok"]
    assert ScheduleRun.objects.filter(schedule="ledger-probe").count() == 1
    # the next slot is a run of its own
    ledger_probe.apply(headers=slot_headers(SLOT + dt.timedelta(minutes=1))).get()
    assert calls == ["ok", "ok"]


def test_a_failing_body_is_recorded_failed_and_still_raises():
    outcome = ledger_probe.apply(args=["boom"], headers=slot_headers(SLOT))
    assert outcome.failed()
    run = ScheduleRun.objects.get(schedule="ledger-probe")
    assert run.outcome == RunOutcome.FAILED
    assert run.error == "RuntimeError: the body failed"


def test_a_slot_that_comes_while_the_previous_run_works_is_skipped_overlap():
    with overlap_lock("ledger-probe", ttl=30) as state:  # the previous run, still working
        assert state == "held"
        result = ledger_probe.apply(headers=slot_headers(SLOT)).get()
    assert result == {"skipped": "overlap", "slot": SLOT.isoformat()}
    assert calls == []
    run = ScheduleRun.objects.get(schedule="ledger-probe")
    assert (run.outcome, run.reason) == (RunOutcome.SKIPPED, SkipReason.OVERLAP)


def test_a_message_without_a_slot_is_an_operators_run_now():
    before = timezone.now().replace(microsecond=0)
    ledger_probe.apply().get()
    run = ScheduleRun.objects.get(schedule="ledger-probe")
    assert run.trigger == RunTrigger.MANUAL
    assert before <= run.slot <= timezone.now() and run.slot.microsecond == 0


def test_a_malformed_slot_header_is_taken_as_a_run_now():
    ledger_probe.apply(headers={"conveyor_slot": "not a time"}).get()
    assert ScheduleRun.objects.get(schedule="ledger-probe").trigger == RunTrigger.MANUAL


def test_a_run_left_running_by_a_vanished_worker_is_marked_lost_by_the_next_slot():
    lost = ledger_claim("ledger-probe", slot=SLOT, trigger=RunTrigger.BEAT, lock_ttl=30)
    ScheduleRun.objects.filter(pk=lost.pk).update(
        started_at=timezone.now() - dt.timedelta(seconds=31))
    recent = ledger_claim("other", slot=SLOT, trigger=RunTrigger.BEAT, lock_ttl=30)

    ledger_probe.apply(headers=slot_headers(SLOT + dt.timedelta(minutes=1))).get()

    lost.refresh_from_db()
    assert lost.outcome == RunOutcome.FAILED and "lost" in lost.error
    recent.refresh_from_db()
    assert recent.outcome == RunOutcome.RUNNING  # another schedule's run is not touched


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_reads_the_slot_from_the_message_and_runs_a_duplicate_once(
        celery_worker_thread):
    from tasks.maintenance import relay_outbox

    first = relay_outbox.apply_async(headers=slot_headers(SLOT))
    second = relay_outbox.apply_async(headers=slot_headers(SLOT))
    results = sorted([first.get(timeout=30), second.get(timeout=30)], key=str)
    assert {"skipped": "duplicate", "slot": SLOT.isoformat()} in results
    run = ScheduleRun.objects.get(schedule="outbox-relay")
    assert run.slot == SLOT and run.trigger == RunTrigger.BEAT
    assert run.outcome == RunOutcome.SUCCEEDED and "sent" in run.result
    assert run.worker and run.task_id in {first.id, second.id}


@pytest.mark.django_db(transaction=True)
def test_a_slot_whose_message_expired_in_the_queue_is_recorded_expired(celery_worker_thread):
    from tasks.maintenance import relay_outbox
    from tests.conftest import wait_for

    past = timezone.now() - dt.timedelta(seconds=30)
    relay_outbox.apply_async(expires=past, headers={
        **slot_headers(SLOT), "periodic_task_name": "conveyor:outbox-relay"})

    assert wait_for(lambda: ScheduleRun.objects.filter(schedule="outbox-relay").exists())
    run = ScheduleRun.objects.get(schedule="outbox-relay")
    assert (run.outcome, run.reason) == (RunOutcome.SKIPPED, SkipReason.EXPIRED)
    assert run.slot == SLOT


@pytest.mark.parametrize("reason", [SkipReason.MISSED, SkipReason.EXPIRED])
def test_a_message_that_arrives_for_a_slot_recorded_missed_or_expired_runs_it(reason):
    # a late second Beat recorded the slot missed (or a duplicate expired) while the on-time
    # message was on its way
    from scheduler.ledger import ledger_record_skip

    assert ledger_record_skip("ledger-probe", slot=SLOT, reason=reason)
    assert ledger_probe.apply(headers=slot_headers(SLOT)).get() == {"done": "ok"}
    run = ScheduleRun.objects.get(schedule="ledger-probe")
    assert (run.outcome, run.reason) == (RunOutcome.SUCCEEDED, "")
    # but a slot that ran, or was skipped by a run (overlap), is not run again
    assert ledger_probe.apply(headers=slot_headers(SLOT))
    assert calls == ["ok"]


def test_a_run_now_in_the_very_second_of_a_beat_slot_is_a_run_of_its_own():
    # an operator's run-now at 03:30:00.4 on a schedule due at 03:30:00: the same instant,
    # another trigger; both run (the overlap lock still keeps them apart in time)
    asked = dt.datetime(2027, 3, 28, 3, 30, 0, 400000, tzinfo=dt.UTC)
    ledger_probe.apply(headers=slot_headers(manual_slot(asked), RunTrigger.MANUAL)).get()
    ledger_probe.apply(headers=slot_headers(asked.replace(microsecond=0))).get()
    assert calls == ["ok", "ok"]
    assert sorted(ScheduleRun.objects.values_list("trigger", flat=True)) == ["beat", "manual"]

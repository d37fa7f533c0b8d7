"""Two Beats started by mistake: each slot still runs once (issue 15).

Two real `celery beat` processes with the project's scheduler (scheduler.beat:LedgerScheduler)
share the test database and the broker and both send every slot of a 2-second schedule; one
real worker runs the messages. The ledger (scheduler/ledger.py) must keep exactly one run per
slot, and the probe's effect (tests/scheduler/probe.py, counted in the suite's own Redis) must
happen once per slot, although both Beats sent it.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from scheduler.models import RunOutcome, RunTrigger, ScheduleRun
from tests.faults.procs import pending_messages, wait_until
from tests.scheduler.probe import (
    PROBE_SCHEDULE,
    PROBE_TASK,
    effects_key,
    header_via_key,
    outcomes_key,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

EVERY_SECONDS = 2
SENT = "Sending due task conveyor:probe "  # celery.beat.Scheduler.apply_entry's INFO line


def _sent(beat) -> int:
    return beat.log().count(SENT)


def _counts(client, key: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(key).items()}


def _runs() -> list[ScheduleRun]:
    return list(ScheduleRun.objects.filter(schedule=PROBE_SCHEDULE).order_by("slot"))


def test_two_beats_send_every_slot_and_each_slot_runs_once(workers, effects, broker):
    # given only the probe's schedule enabled, every 2 seconds (the project's own schedules,
    # synced by migrate, stay off: their messages would only slow the one worker down)
    PeriodicTask.objects.update(enabled=False)
    every, _ = IntervalSchedule.objects.get_or_create(every=EVERY_SECONDS,
                                                      period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="conveyor:probe", task=PROBE_TASK, interval=every,
                                queue="maintenance", expire_seconds=10)
    PeriodicTasks.update_changed()

    # when one worker that knows the probe runs, and then two Beats (after the worker is
    # ready: messages of two slots waiting together would run at once, and the second would
    # be recorded `skipped: overlap`), until both Beats have sent at least three slots and the
    # ledger holds at least four
    worker = workers.start(concurrency=2, include=("tests.faults.jobs", "tests.scheduler.probe"))
    beats = [workers.start_beat(), workers.start_beat()]
    assert wait_until(lambda: all(_sent(b) >= 3 for b in beats) and len(_runs()) >= 4,
                      timeout=30, interval=0.2), workers.logs()
    for beat in beats:
        beat.stop()
    # and the worker drains what they sent
    assert wait_until(lambda: pending_messages(broker, "maintenance") == 0, timeout=20), \
        workers.logs()
    assert worker.alive()

    # then both Beats were this project's scheduler and both really sent the probe
    for beat in beats:
        assert "scheduler.beat.LedgerScheduler" in beat.log(), beat.log()[-3000:]
    sent = [_sent(b) for b in beats]
    assert min(sent) >= 3, sent

    # and the ledger holds one run per slot: consecutive slots of the 2-second grid (epoch
    # multiples), no gap, each stamped by Beat (the slot header reached the worker) and done
    runs = _runs()
    slots = [run.slot for run in runs]
    assert len(slots) >= 4
    assert all(int(s.timestamp()) % EVERY_SECONDS == 0 and s.microsecond == 0 for s in slots)
    step = dt.timedelta(seconds=EVERY_SECONDS)
    assert slots == [slots[0] + n * step for n in range(len(slots))], slots
    assert {(run.trigger, run.outcome) for run in runs} == {
        (RunTrigger.BEAT, RunOutcome.SUCCEEDED)}
    assert {run.worker for run in runs} == {worker.name}

    # and the effect happened exactly once per slot, for those slots and no other
    assert _counts(effects, effects_key()) == {s.isoformat(): 1 for s in slots}
    # the real worker hands the header to the task as a request attribute
    assert _counts(effects, header_via_key()) == {"attribute": len(slots)}

    # and the duplicates were really there: more messages than runs, the extra deliveries
    # refused by the ledger without running the body (a Beat stopped mid-send may have logged
    # a message it did not publish, hence <=)
    outcomes = _counts(effects, outcomes_key())
    delivered = sum(outcomes.values())
    assert outcomes.get("ran") == len(slots), outcomes
    assert set(outcomes) == {"ran", "duplicate"}, outcomes
    assert len(slots) < delivered <= sum(sent), (outcomes, sent)
    print(f"[two-beats] slots={len(slots)} sent={sent} delivered={delivered} "
          f"duplicates={outcomes['duplicate']}")

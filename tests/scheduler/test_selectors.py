"""The queue depths over time, read back from the queue health check's ledger rows."""

from __future__ import annotations

import datetime as dt

import pytest

from scheduler.models import RunOutcome, RunTrigger, ScheduleRun
from scheduler.selectors import queue_depth_history

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def _check(minutes_ago: int, depths: dict | None, *, schedule: str = "queue-health",
           outcome: str = RunOutcome.SUCCEEDED, trigger: str = RunTrigger.BEAT,
           result: object = None) -> ScheduleRun:
    slot = NOW - dt.timedelta(minutes=minutes_ago)
    if result is None and depths is not None:
        result = {"checked_at": slot.isoformat(),
                  "queues": {q: {"depth": d, "workers": [], "workers_seen": 0}
                             for q, d in depths.items()}, "kinds": {}}
    return ScheduleRun.objects.create(schedule=schedule, slot=slot, started_at=slot,
                                      finished_at=slot, outcome=outcome, trigger=trigger,
                                      result=result)


def test_the_depths_of_each_check_in_the_range_oldest_first():
    _check(2, {"events": 5, "cache": 0})
    _check(61, {"events": 99})  # before the range
    _check(0, {"events": 7})  # at `until`: after the range
    _check(30, {"events": 1, "cache": None})  # the broker did not answer for cache
    _check(45, {"events": 2}, trigger=RunTrigger.MANUAL)  # an operator's run-now counts too

    history = queue_depth_history(since=NOW - dt.timedelta(hours=1), until=NOW)

    assert history == [
        (NOW - dt.timedelta(minutes=45), {"events": 2}),
        (NOW - dt.timedelta(minutes=30), {"events": 1, "cache": None}),
        (NOW - dt.timedelta(minutes=2), {"events": 5, "cache": 0}),
    ]


def test_other_schedules_runs_that_did_not_succeed_and_odd_results_are_left_out():
    _check(10, {"events": 1}, schedule="outbox-relay")
    _check(9, None, outcome=RunOutcome.SKIPPED)
    _check(8, None, outcome=RunOutcome.FAILED)
    _check(7, None, result={"skipped": "duplicate"})  # no queues in it
    _check(6, None, result=["not", "a", "snapshot"])
    _check(5, {"events": 3})

    history = queue_depth_history(since=NOW - dt.timedelta(hours=1))

    assert history == [(NOW - dt.timedelta(minutes=5), {"events": 3})]

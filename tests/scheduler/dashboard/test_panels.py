"""What the dashboard's panels read: the hour's buckets, the queues' depths over the hour
(ledger) and now (the real broker), throughput by kind, dead letters."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from config.celery import app
from domain.access.audit import Actor
from domain.jobs.models import JobStatus
from domain.jobs.services import queue_pause
from scheduler.dashboard.panels import dead_letters, hour_buckets, queues_panel, throughput_panel
from scheduler.models import RunOutcome, ScheduleRun
from tests.broker_utils import UNREACHABLE_BROKER, broker_at
from tests.factories import JobFactory
from workers.presence import heartbeat

pytestmark = pytest.mark.django_db


def _health_check(slot: dt.datetime, depths: dict) -> None:
    ScheduleRun.objects.create(
        schedule="queue-health", slot=slot, started_at=slot, finished_at=slot,
        outcome=RunOutcome.SUCCEEDED,
        result={"queues": {q: {"depth": d} for q, d in depths.items()}, "kinds": {}})


def test_the_hour_is_twelve_five_minute_buckets_ending_with_the_current_one():
    now = dt.datetime(2026, 3, 2, 12, 7, 31, tzinfo=dt.UTC)
    starts = hour_buckets(now)
    assert starts[0] == dt.datetime(2026, 3, 2, 11, 10, tzinfo=dt.UTC)
    assert starts[-1] == dt.datetime(2026, 3, 2, 12, 5, tzinfo=dt.UTC)
    assert len(starts) == 12


def test_queue_depths_over_the_hour_end_with_the_brokers_answer_now(private_broker):
    # given three health checks in the hour (and one before it) and two messages waiting now
    now = timezone.now()
    _health_check(now - dt.timedelta(minutes=70), {"events": 500})
    _health_check(now - dt.timedelta(minutes=40), {"events": 9, "cache": 1})
    _health_check(now - dt.timedelta(minutes=20), {"events": 3, "cache": None})
    _health_check(now - dt.timedelta(minutes=1), {"events": 0, "cache": 0})
    app.send_task("conveyor.events.noop", args=["x"], queue="events")
    app.send_task("conveyor.events.noop", args=["y"], queue="events")

    panel = queues_panel(now=now)

    rows = {row.state.name: row for row in panel.rows}
    assert list(rows) == ["events", "notifications", "bulk", "cache", "maintenance"]
    assert (rows["events"].state.depth, rows["events"].highest) == (2, 9)
    assert (rows["cache"].state.depth, rows["cache"].highest) == (0, 1)
    assert (rows["bulk"].state.depth, rows["bulk"].highest) == (0, 0)
    assert panel.checks == 3
    # the chart draws a line per queue: cache's is broken where the broker did not answer
    assert panel.chart.svg.count('data-series="cache"') == 2
    assert panel.chart.svg.count('data-series="events"') == 1


def test_paused_queues_and_the_workers_seen_consuming_each(private_broker):
    # given a paused queue (through the service operators use) and a worker's heartbeat
    queue_pause(queue="bulk", actor=Actor("user", "otto"), reason="database maintenance")
    heartbeat(hostname="w1@host", pid=1, queues=["events", "cache"],
              configured=["events", "cache", "bulk"])

    panel = queues_panel(now=timezone.now())

    rows = {row.state.name: row.state for row in panel.rows}
    assert [state.name for state in panel.paused] == ["bulk"]
    assert (rows["bulk"].paused_by, rows["bulk"].reason) == ("otto", "database maintenance")
    assert rows["events"].consumers == ["w1@host"]
    assert rows["bulk"].consumers == []
    assert not rows["events"].paused


def test_with_the_broker_down_the_depth_now_is_unknown_and_the_page_still_draws():
    now = timezone.now()
    _health_check(now - dt.timedelta(minutes=5), {"events": 4})
    with broker_at(UNREACHABLE_BROKER):
        panel = queues_panel(now=now)
    rows = {row.state.name: row for row in panel.rows}
    assert rows["events"].state.depth is None
    assert rows["events"].highest == 4


def test_throughput_rows_and_chart_by_kind():
    now = timezone.now()
    for status in (JobStatus.SUCCEEDED, JobStatus.SUCCEEDED, JobStatus.DEAD):
        JobFactory(kind="noop", status=status, created_at=now - dt.timedelta(minutes=3),
                   finished_at=now - dt.timedelta(minutes=2))
    JobFactory(kind="cache_invalidation", status=JobStatus.SUCCEEDED,
               created_at=now - dt.timedelta(minutes=40),
               finished_at=now - dt.timedelta(minutes=30))

    panel = throughput_panel(now=now)

    assert [(r.kind, r.succeeded, r.dead) for r in panel.rows] == [
        ("cache_invalidation", 1, 0), ("noop", 2, 1)]
    assert panel.chart.svg.count("<rect") == 2
    assert panel.created_within_hours == 6


def test_dead_letters_per_kind_with_the_most_frequent_error_first():
    JobFactory.create_batch(3, kind="noop", status=JobStatus.DEAD,
                            error={"type": "TimeoutError", "message": "t"})
    JobFactory(kind="noop", status=JobStatus.DEAD, error={"type": "ValueError", "message": "v"})
    [row] = dead_letters()
    assert (row.kind, row.count, row.error_types) == \
        ("noop", 4, [("TimeoutError", 3), ("ValueError", 1)])

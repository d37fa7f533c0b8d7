"""The jobs' reads behind the operator dashboard: throughput by kind in buckets, dead letters
by kind and error type, and the replay filter's error type."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from domain.jobs.models import JobStatus
from domain.jobs.selectors import dead_jobs_by_kind, job_throughput, jobs_matching_replay
from domain.jobs.services import jobs_replay
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
SINCE = NOW - dt.timedelta(hours=1)
BUCKET = dt.timedelta(minutes=5)


def _finished(kind: str, status: str, minutes_ago: float, *, created_minutes_ago: float = 90):
    return JobFactory(kind=kind, status=status,
                      created_at=NOW - dt.timedelta(minutes=created_minutes_ago),
                      finished_at=NOW - dt.timedelta(minutes=minutes_ago))


def test_throughput_counts_each_kind_and_outcome_in_its_five_minute_bucket():
    # given jobs that ended in the hour, at known minutes
    _finished("noop", JobStatus.SUCCEEDED, 59.5)  # first bucket (11:00-11:05)
    _finished("noop", JobStatus.SUCCEEDED, 56)  # 11:04, first bucket
    _finished("noop", JobStatus.SUCCEEDED, 55)  # 11:05 sharp opens the second
    _finished("noop", JobStatus.DEAD, 1)  # 11:59, last bucket
    _finished("webhook_delivery", JobStatus.SUCCEEDED, 30)  # 11:30, seventh bucket
    # and jobs that are not throughput of this hour: before it, after it, still running,
    # cancelled, or created longer ago than the span the read looks through
    _finished("noop", JobStatus.SUCCEEDED, 61)
    _finished("noop", JobStatus.SUCCEEDED, -1)
    JobFactory(kind="noop", status=JobStatus.RUNNING, created_at=NOW - dt.timedelta(minutes=5))
    _finished("noop", JobStatus.CANCELLED, 10)
    _finished("noop", JobStatus.SUCCEEDED, 10, created_minutes_ago=7 * 60)

    # when the hour is read in 5-minute buckets
    result = job_throughput(since=SINCE, until=NOW, bucket=BUCKET,
                            created_within=dt.timedelta(hours=6))

    # then twelve buckets from 11:00, each job in its own, succeeded and dead apart
    assert result.starts == [SINCE + i * BUCKET for i in range(12)]
    assert result.kinds == ["noop", "webhook_delivery"]
    assert result.succeeded["noop"] == [2, 1] + [0] * 10
    assert result.dead["noop"] == [0] * 11 + [1]
    assert result.succeeded["webhook_delivery"] == [0] * 6 + [1] + [0] * 5
    assert "webhook_delivery" not in result.dead
    assert result.finished("noop") == [2, 1] + [0] * 9 + [1]
    assert result.finished("webhook_delivery") == [0] * 6 + [1] + [0] * 5


def test_throughput_of_an_empty_hour_has_its_buckets_and_no_kind():
    result = job_throughput(since=SINCE, until=NOW, bucket=BUCKET,
                            created_within=dt.timedelta(hours=6))
    assert len(result.starts) == 12
    assert result.kinds == []


def test_a_partial_last_bucket_counts_what_ended_in_it():
    # given a window of 57 minutes: the last bucket is two minutes long
    until = SINCE + dt.timedelta(minutes=57)
    JobFactory(kind="noop", status=JobStatus.SUCCEEDED, created_at=SINCE,
               finished_at=SINCE + dt.timedelta(minutes=56))

    result = job_throughput(since=SINCE, until=until, bucket=BUCKET,
                            created_within=dt.timedelta(hours=6))

    assert len(result.starts) == 12
    assert result.succeeded["noop"][-1] == 1


@pytest.mark.postgres
def test_throughput_reads_through_the_status_and_creation_index():
    # The read must not scan the table: its rows are reached by (status, created_at).
    with CaptureQueriesContext(connection) as queries:
        job_throughput(since=SINCE, until=NOW, bucket=BUCKET,
                       created_within=dt.timedelta(hours=6))
    sql = queries.captured_queries[-1]["sql"]
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # the planner's choice on a tiny table
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "job_status_created" in plan


def test_dead_letters_by_kind_and_error_type():
    JobFactory.create_batch(2, kind="webhook_delivery", status=JobStatus.DEAD,
                            error={"type": "ConnectError", "message": "refused"})
    JobFactory(kind="webhook_delivery", status=JobStatus.DEAD,
               error={"type": "HTTPStatusError", "message": "410"})
    JobFactory(kind="noop", status=JobStatus.DEAD, error=None)
    JobFactory(kind="noop", status=JobStatus.SUCCEEDED)
    JobFactory(kind="email_delivery", status=JobStatus.RETRYING,
               error={"type": "ConnectError", "message": "refused"})

    assert dead_jobs_by_kind() == {
        "noop": {"": 1},
        "webhook_delivery": {"ConnectError": 2, "HTTPStatusError": 1},
    }


def test_the_replay_filter_selects_by_the_last_error_type():
    match = JobFactory(kind="noop", status=JobStatus.DEAD, finished_at=NOW,
                       error={"type": "ConnectError", "message": "refused"})
    other = JobFactory(kind="noop", status=JobStatus.DEAD, finished_at=NOW,
                       error={"type": "ValueError", "message": "bad"})

    matching = jobs_matching_replay(api_key=None, status=JobStatus.DEAD,
                                    error_type="ConnectError")
    assert list(matching) == [match]

    assert jobs_replay(api_key=None, error_type="ConnectError") == 1
    match.refresh_from_db()
    other.refresh_from_db()
    assert (match.status, other.status) == (JobStatus.QUEUED, JobStatus.DEAD)

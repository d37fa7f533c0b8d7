"""The jobs' metrics: each transition counted once, by kind, after its commit (a rolled-back
one never); the relay and the rescue counted; the current counts exact, read with one
aggregate over the counted statuses through an index (never a count of the whole table),
once per cache period whatever the number of scrapes."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from domain.common.errors import PermanentError, TransientError
from domain.jobs import lifecycle
from domain.jobs.metrics import jobs_now_query
from domain.jobs.models import Job, JobStatus
from domain.jobs.outbox import outbox_relay
from domain.jobs.rescue import jobs_rescue_orphans
from domain.jobs.services import (
    job_cancel,
    job_create,
    job_replay,
    jobs_cancel_selected,
    jobs_replay_selected,
)
from tests.broker_utils import UNREACHABLE_BROKER, broker_at
from tests.factories import JobFactory
from tests.metrics_utils import fresh_metrics, scrape, scrape_with_redis_down, value

_fresh = pytest.fixture(autouse=True)(fresh_metrics)


def _transitions(samples, kind: str = "noop") -> dict[str, float]:
    return {name: value(samples, "conveyor_job_transitions_total", kind=kind, transition=name)
            for name in ("created", "claimed", "succeeded", "retrying", "dead", "cancelled",
                         "replayed", "rescued", "deferred", "released")}


def _claim(job: Job) -> Job:
    return lifecycle.job_claim(job_id=str(job.pk), worker="w@h")


@pytest.mark.django_db(transaction=True)
def test_every_transition_is_counted_once_by_kind():
    # given jobs taken through every transition, as the worker and the operators do
    made = [job_create(kind="noop", params={}) for _ in range(6)]
    a, b, c, d, e, f = made
    lifecycle.job_failed(job=_claim(a), exc=TransientError("flaky"))  # retrying
    Job.objects.filter(pk=a.pk).update(next_retry_at=timezone.now())
    lifecycle.job_succeed(job=_claim(a), result=None)  # claimed again, succeeded
    lifecycle.job_failed(job=_claim(b), exc=PermanentError("bad"))  # dead
    job_replay(job=Job.objects.get(pk=b.pk))  # replayed
    job_cancel(job=c)
    jobs_cancel_selected(ids=[d.pk, e.pk, a.pk])  # a has succeeded: not cancelled
    jobs_replay_selected(ids=[c.pk, d.pk])
    lifecycle.jobs_defer(jobs=[_claim(c)], countdown=0)
    lifecycle.jobs_release(jobs=[_claim(d)])
    _claim(f)
    assert jobs_rescue_orphans(older_than=timedelta(0)) == {"requeued": 1, "dead": 0}

    # when scraped, then each is counted as it happened
    samples = scrape()
    assert _transitions(samples) == {
        "created": 6, "claimed": 6, "succeeded": 1, "retrying": 1, "dead": 1, "cancelled": 3,
        "replayed": 3, "rescued": 1, "deferred": 1, "released": 1}
    assert value(samples, "conveyor_orphans_rescued_total", kind="noop",
                 outcome="requeued") == 1
    # and kinds nothing happened to are shown at 0, so the first of them is seen by increase()
    assert value(samples, "conveyor_job_transitions_total", kind="cache_invalidation",
                 transition="dead") == 0


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_is_never_counted():
    # given a job created, then failed, inside transactions that roll back
    with pytest.raises(RuntimeError), transaction.atomic():
        job_create(kind="noop", params={})
        raise RuntimeError("the caller changed its mind")
    job = JobFactory()
    claimed = _claim(job)
    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.job_failed(job=claimed, exc=PermanentError("bad"))
        raise RuntimeError("rolled back")

    # then only the claim (committed) is counted
    counts = _transitions(scrape())
    assert (counts["created"], counts["claimed"], counts["dead"]) == (0, 1, 0)


@pytest.mark.django_db(transaction=True)
def test_a_hand_over_that_failed_and_the_relay_that_sent_it_are_counted(settings):
    # given a job committed while the broker is down
    settings.OUTBOX_RELAY_GRACE_SECONDS = 0
    with broker_at(UNREACHABLE_BROKER):
        job_create(kind="noop", params={})

    # when the relay runs with the broker back
    assert outbox_relay() == 1

    # then both are counted
    samples = scrape()
    assert value(samples, "conveyor_outbox_unsent_total", kind="noop") == 1
    assert value(samples, "conveyor_outbox_relayed_total", kind="noop") == 1


@pytest.mark.django_db(transaction=True)
def test_a_rescue_on_the_last_attempt_counts_a_dead_job():
    job = JobFactory(max_attempts=1)
    _claim(job)

    assert jobs_rescue_orphans(older_than=timedelta(0)) == {"requeued": 0, "dead": 1}

    samples = scrape()
    assert value(samples, "conveyor_orphans_rescued_total", kind="noop", outcome="dead") == 1
    assert _transitions(samples)["dead"] == 1


def _workload(now):
    """3 queued and due, 1 queued for later, 1 retrying still waiting, 1 retrying due, 2
    running, 2 dead, 5 succeeded, 1 cancelled (noop); 1 queued cache_invalidation."""
    for _ in range(3):
        JobFactory(created_at=now - timedelta(seconds=30))
    JobFactory(run_at=now + timedelta(hours=1))
    JobFactory(status=JobStatus.RETRYING, next_retry_at=now + timedelta(minutes=5))
    JobFactory(status=JobStatus.RETRYING, created_at=now - timedelta(minutes=10),
               next_retry_at=now - timedelta(seconds=90))
    for status, n in ((JobStatus.RUNNING, 2), (JobStatus.DEAD, 2), (JobStatus.SUCCEEDED, 5),
                      (JobStatus.CANCELLED, 1)):
        for _ in range(n):
            JobFactory(status=status)
    JobFactory(kind="cache_invalidation", created_at=now - timedelta(seconds=5))


@pytest.mark.django_db
def test_the_current_counts_are_exact(settings):
    settings.METRICS_GAUGE_CACHE_SECONDS = 0
    _workload(timezone.now())
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE events_job")  # the table's estimate (17 rows) is made

    samples = scrape()

    def jobs(status: str, kind: str = "noop") -> float | None:
        return value(samples, "conveyor_jobs", kind=kind, status=status)

    assert [jobs(s) for s in ("queued", "running", "retrying", "dead")] == [4, 2, 2, 2]
    assert jobs("succeeded") is None and jobs("cancelled") is None  # never counted here
    assert jobs("queued", "cache_invalidation") == 1
    assert jobs("dead", "cache_invalidation") == 0
    assert value(samples, "conveyor_jobs_waiting", kind="noop") == 4  # 3 due + 1 retry due
    # the oldest due: the retry due 90 s ago (not its creation, 10 minutes ago)
    assert 90 <= value(samples, "conveyor_jobs_oldest_waiting_age_seconds", kind="noop") < 120
    assert value(samples, "conveyor_jobs_oldest_waiting_age_seconds", kind="bulk_run") == 0
    if connection.vendor == "postgresql":
        assert value(samples, "conveyor_jobs_table_rows_estimate") == 17


def _jobs_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if '"events_job"' in q["sql"]]


@pytest.mark.django_db
def test_one_query_reads_the_counts_and_many_scrapes_share_it(settings):
    settings.METRICS_GAUGE_CACHE_SECONDS = 60
    _workload(timezone.now())

    # when scraped three times within the cache period
    with CaptureQueriesContext(connection) as queries:
        first = scrape()
        for _ in range(2):
            assert scrape() is not None

    # then the jobs table was read once, by one aggregate of the counted statuses: no count
    # of the whole table (every query on it names the statuses it reads)
    [sql] = _jobs_queries(queries.captured_queries)
    assert "GROUP BY" in sql
    assert re.search(r'"events_job"\."status" IN \(', sql), sql
    assert "'succeeded'" not in sql and "'cancelled'" not in sql
    assert value(first, "conveyor_jobs", kind="noop", status="queued") == 4


@pytest.mark.django_db
def test_without_a_cache_period_each_scrape_reads_again(settings):
    settings.METRICS_GAUGE_CACHE_SECONDS = 0
    with CaptureQueriesContext(connection) as queries:
        scrape()
        scrape()
    assert len(_jobs_queries(queries.captured_queries)) == 2


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_counts_query_reads_an_index_not_the_table():
    # given a jobs table mostly of finished jobs (20,000) and a few open ones, analyzed
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events_job (id, kind, handler, params, status, attempts, max_attempts,"
            " replays, progress_done, traceback, created_at, finished_at, worker,"
            " correlation_id) SELECT gen_random_uuid(), 'noop', '', '{}', 'succeeded', 1, 5, 0,"
            " 0, '', now(), now(), '', '' FROM generate_series(1, 20000)")
    _workload(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events_job")

    # when PostgreSQL plans the scrape's query
    sql, params = jobs_now_query(timezone.now()).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    # then it reads the status index, not every row
    assert "job_status_created" in plan, plan
    assert "Seq Scan on events_job" not in plan, plan


@pytest.mark.django_db
def test_the_counts_are_served_while_redis_is_down(settings):
    # given open jobs and a Redis that does not answer (no counters, no cache)
    _workload(timezone.now())
    samples = scrape_with_redis_down(settings)

    # then the gauges come from the database all the same
    assert value(samples, "conveyor_metrics_source_up", source="counters") == 0
    assert value(samples, "conveyor_metrics_source_up", source="jobs") == 1
    assert value(samples, "conveyor_jobs", kind="noop", status="queued") == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_locked_jobs_table_costs_the_scrape_one_timeout_and_the_rest_still_answers(
        settings, caplog):
    # given the jobs table locked by another transaction (a migration rewriting it)
    from django.db import connections

    settings.METRICS_GAUGE_CACHE_SECONDS = 0
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE events_job IN ACCESS EXCLUSIVE MODE")

        # when scraped
        samples = scrape()
    finally:
        other.close()  # (rolls the lock back)

    # then the jobs query gave up at its statement timeout, the sets reading the database
    # after it were not tried in this scrape, and everything else answered
    up = {source: value(samples, "conveyor_metrics_source_up", source=source)
          for source in ("counters", "broker", "bulk_runs", "jobs", "queues",
                         "webhook_endpoints")}
    assert up == {"counters": 1, "broker": 1, "bulk_runs": 1, "jobs": 0, "queues": 0,
                  "webhook_endpoints": 0}
    assert "canceling statement due to statement timeout" in caplog.text
    assert "database did not answer this scrape" in caplog.text
    assert value(samples, "conveyor_jobs", kind="noop", status="queued") is None
    assert value(samples, "conveyor_queue_depth", queue="events") == 0

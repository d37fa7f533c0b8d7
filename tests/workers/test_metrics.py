"""Worker-side metrics reach the API's GET /metrics with no port of their own: a real worker
subprocess (prefork) runs a known workload (events published through the API, one job that
fails once, one that fails until it is dead) and the endpoint of this process shows exactly
what happened, from the worker's periodic flushes and from its flush at shutdown; with no
worker, the queue gauges show what waits.

The worker and this process share a Redis of the test's own (the broker and the metrics), as
the fault tests do: a worker thread of another test in this session consumes the suite's
shared broker, and must not take these messages.
"""

from __future__ import annotations

import pytest
from django.db import connection

import tests.faults.jobs  # noqa: F401 - the test-only job kinds, in this process too
from config.celery import app
from domain.access.audit import Actor
from domain.common import metrics
from domain.common import redis as project_redis
from domain.jobs.models import TERMINAL_JOB_STATUSES, Job
from domain.jobs.services import queue_pause
from tests.broker_utils import broker_at
from tests.bulk_utils import make_products, run_to_end, start
from tests.conftest import wait_for
from tests.faults.jobs import BACKOFF_KIND, EFFECT_KIND
from tests.faults.procs import RedisServer, WorkerFactory, free_port
from tests.metrics_utils import TOKEN, reset_metrics, scrape, value

PING = {"type": "demo.ping", "payload": {"message": "metrics"}}


@pytest.fixture
def own_redis(tmp_path, settings):
    """A Redis of this test's own: the broker (db 14) of this process and of the workers it
    starts, and the Redis of both processes' metrics (db 0)."""
    server = RedisServer(free_port(), tmp_path / "redis")
    server.start()
    original = settings.REDIS_URL
    reset_metrics()
    settings.REDIS_URL = server.url(0)
    project_redis._client = None
    try:
        with broker_at(server.broker_url):
            yield server
    finally:
        metrics.discard_pending()  # (its keys go with the server)
        settings.REDIS_URL = original
        project_redis._client = None
        server.stop(kill=True)


@pytest.fixture
def workers(own_redis, transactional_db, tmp_path):
    factory = WorkerFactory(app=app, redis_server=own_redis, log_dir=tmp_path / "workers")
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture(autouse=True)
def _scrape_settings(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_GAUGE_CACHE_SECONDS = 0


def _all_done(count: int) -> bool:
    done = Job.objects.filter(status__in=TERMINAL_JOB_STATUSES).count() == count
    connection.close()  # (polled from the test thread while workers write)
    return done


def _transitions(samples, kind: str) -> dict[str, float | None]:
    return {t: value(samples, "conveyor_job_transitions_total", kind=kind, transition=t)
            for t in ("created", "claimed", "succeeded", "retrying", "dead")}


def test_a_known_workload_through_a_real_worker_shows_exactly_in_the_api_metrics(
        workers, client_all):
    # given a real worker subprocess (prefork, 2 processes) on the test's broker and Redis,
    # seen through its heartbeat
    worker = workers.start(concurrency=2)
    wait_for(lambda: value(scrape(), "conveyor_queue_consumers", queue="events") == 1,
             timeout=30, message="the worker's heartbeat")
    assert value(scrape(), "conveyor_workers_seen") == 1

    # when 3 events are published one by one and 5 in a batch (demo.ping: a noop job each;
    # single-job messages and one micro-batch), and two jobs are triggered that fail: one
    # once (then succeeds), one on every attempt (its kind has 4: then it is dead)
    for _ in range(3):
        assert client_all.post("/api/v1/events", PING, format="json").status_code == 202
    response = client_all.post("/api/v1/events/batch", {"events": [PING] * 5}, format="json")
    assert response.status_code == 202, response.content
    for kind, fail_times in ((EFFECT_KIND, 1), (BACKOFF_KIND, 99)):
        response = client_all.post("/api/v1/jobs", {"kind": kind,
                                                    "params": {"fail_times": fail_times}},
                                   format="json")
        assert response.status_code == 202, response.content
    wait_for(lambda: _all_done(10), timeout=90, message="the 10 jobs to finish")

    # then, while the worker still runs, its counts arrive by its own periodic flushes
    wait_for(lambda: _transitions(scrape(), "noop")["succeeded"] == 8, timeout=30,
             message="the worker's flush")

    # and after it stops (its pool processes flush at shutdown), every figure is exact, and
    # nobody consumes the queues any more
    worker.stop()
    assert worker.proc.returncode == 0, worker.log()[-3000:]
    samples = scrape()
    assert value(samples, "conveyor_queue_consumers", queue="events") == 0
    assert value(samples, "conveyor_events_accepted_total", type="demo.ping") == 8
    assert _transitions(samples, "noop") == {
        "created": 8, "claimed": 8, "succeeded": 8, "retrying": 0, "dead": 0}
    assert _transitions(samples, EFFECT_KIND) == {
        "created": 1, "claimed": 2, "succeeded": 1, "retrying": 1, "dead": 0}
    assert _transitions(samples, BACKOFF_KIND) == {
        "created": 1, "claimed": 4, "succeeded": 0, "retrying": 3, "dead": 1}
    # one run of the body per attempt, timed in the worker
    assert value(samples, "conveyor_job_run_seconds_count", kind="noop") == 8
    assert value(samples, "conveyor_job_run_seconds_count", kind=EFFECT_KIND) == 2
    assert value(samples, "conveyor_job_run_seconds_count", kind=BACKOFF_KIND) == 4
    assert value(samples, "conveyor_job_run_seconds_bucket", kind=BACKOFF_KIND, le="+Inf") == 4
    # the dead letter is there now, and the API's own requests by route and status
    assert value(samples, "conveyor_jobs", kind=BACKOFF_KIND, status="dead") == 1
    assert value(samples, "conveyor_http_requests_total", method="POST", route="api/v1/events",
                 status="202") == 3
    assert value(samples, "conveyor_http_requests_total", method="POST",
                 route="api/v1/events/batch", status="202") == 1
    assert value(samples, "conveyor_http_requests_total", method="POST", route="api/v1/jobs",
                 status="202") == 2


def test_with_no_worker_the_queue_gauges_show_what_waits(own_redis, transactional_db,
                                                         client_all):
    # given 4 events published one by one, nobody consuming, and the bulk queue paused
    for _ in range(4):
        assert client_all.post("/api/v1/events", PING, format="json").status_code == 202
    queue_pause(queue="bulk", actor=Actor("user", "ops"), reason="metrics test")

    # when scraped
    samples = scrape()

    # then the broker holds 4 messages on the events queue, the database 4 jobs due, and
    # the other queues nothing
    assert value(samples, "conveyor_queue_depth", queue="events") == 4
    assert value(samples, "conveyor_queue_waiting_jobs", queue="events") == 4
    assert value(samples, "conveyor_jobs", kind="noop", status="queued") == 4
    assert value(samples, "conveyor_queue_oldest_waiting_age_seconds", queue="events") >= 0
    for queue in ("notifications", "bulk", "cache", "maintenance"):
        assert value(samples, "conveyor_queue_depth", queue=queue) == 0
        assert value(samples, "conveyor_queue_waiting_jobs", queue=queue) == 0
    # and no queue has a consumer; only bulk is paused
    assert {q: (value(samples, "conveyor_queue_consumers", queue=q),
                value(samples, "conveyor_queue_paused", queue=q))
            for q in ("events", "bulk")} == {"events": (0, 0), "bulk": (0, 1)}
    assert value(samples, "conveyor_workers_seen") == 0
    assert value(samples, "conveyor_metrics_source_up", source="broker") == 1


def test_with_the_broker_down_the_queue_depths_are_missing_and_said_so(
        own_redis, transactional_db):
    # given the test's Redis (the broker, and the metrics' Redis) stopped
    own_redis.stop(kill=True)

    # when scraped
    samples = scrape()

    # then the endpoint answers from the database, and says which sources did not answer
    assert value(samples, "conveyor_metrics_source_up", source="broker") == 0
    assert value(samples, "conveyor_metrics_source_up", source="counters") == 0
    assert value(samples, "conveyor_metrics_source_up", source="jobs") == 1
    assert value(samples, "conveyor_queue_depth", queue="events") is None
    assert value(samples, "conveyor_jobs", kind="noop", status="queued") == 0


@pytest.mark.django_db(transaction=True)
def test_jobs_worked_on_together_are_timed_by_their_body(settings, private_broker):
    # given a bulk run (a job whose task takes its message's jobs together), delivered to
    # the real task in this process, twice (its first slice ends after a chunk); its messages
    # under a prefix of this test's own, which the session's worker thread, if another test
    # of this process started it, never takes
    settings.METRICS_TOKEN = TOKEN
    settings.BULK_SLICE_SECONDS = 0
    reset_metrics()
    make_products(3, category="coffee")
    run = run_to_end(start("catalog.reprice", {"category": "coffee", "percent": 10},
                           chunk_size=2))
    assert run.chunks_done == 2

    # then each turn of its body was timed: two slices of a chunk each, and the turn that
    # found the rows done
    samples = scrape()
    assert value(samples, "conveyor_job_run_seconds_count", kind="bulk_run") == 3
    reset_metrics()

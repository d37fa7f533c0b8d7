"""The `metrics` scenario (issue 16): what the metrics cost the work they count, each figure
next to the same work without them, in the same run, in this process (`python -m bench
--only metrics`; opt-in, it writes bench/results/metrics.json).

- **Middleware**: GET /bench/baseline (the minimal JSON view: the cheapest request, so the
  middleware's share is the largest it can be) through Django's WSGI handler, built twice:
  with the project's MIDDLEWARE and without RequestMetricsMiddleware, alternating in blocks
  (`metrics_rounds` x 10 blocks of each, each first every other time, `metrics_requests`
  requests in all); per-request time is the median block of each, in CPU time of the
  requesting thread (time.thread_time: the other processes of a shared machine do not
  count, and wall time swung more between runs than the middleware costs). The middleware
  is also timed alone: wrapped around a view that answers at once, for a resolved API
  route, against that view called directly.
- **Per job**: the real micro-batch task (tasks.demo.noop, run eagerly in this process: the
  claim, the body timed, the successes recorded, every count made), on `metrics_jobs` new
  noop jobs a round, with recording on and off (domain/common/metrics.set_recording),
  alternating, each first every other round; CPU microseconds of this thread per job (the
  database's own work is in its server, not here; median round). As the difference is
  within the noise of that work, the recording a batch makes is also timed alone (the
  counts of its claim and its successes, its jobs' run times), per job. The Redis commands
  the recording sent during the batches (INFO commandstats) are counted: the flushing
  thread's, never one per job.
- **A flush**: one flush of `metrics_flush_series` label sets (counters and histograms), the
  most a busy process sends once a second.
- **Gauges on a large table**: `metrics_table_rows` finished jobs and `metrics_open_jobs`
  open ones (queued, running, retrying, dead), inserted by SQL and analyzed; the scrape's
  jobs query (domain/jobs/metrics.jobs_now) against `SELECT count(*) FROM events_job`, the
  whole-table count it avoids; and a whole scrape (render) with its gauges cached.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.run import Suite

METRICS_MIDDLEWARE = "domain.common.middleware.RequestMetricsMiddleware"
REDIS_COMMANDS = ("hincrby", "hincrbyfloat", "multi", "exec")


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else 0.0


def _median_ms(call, times: int = 5) -> float:
    durations = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    return round(statistics.median(durations) * 1000, 3)


def middleware_cost(requests: int, rounds: int) -> dict:
    """Microseconds per request with and without the request metrics middleware."""
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import RequestFactory, override_settings

    from domain.common import metrics

    with_it = WSGIHandler()
    with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE
                                       if m != METRICS_MIDDLEWARE]):
        without_it = WSGIHandler()
    environ = RequestFactory().get("/bench/baseline", HTTP_HOST="127.0.0.1").environ

    def start_response(status, headers, exc_info=None):
        assert status.startswith("200"), status

    def per_request(handler, n: int) -> float:
        started = time.thread_time()
        for _ in range(n):
            handler(dict(environ), start_response).close()
        return (time.thread_time() - started) / n * 1e6

    blocks = rounds * 10
    block = max(1, requests // blocks)
    for handler in (with_it, without_it):  # warm both
        per_request(handler, min(requests, 500))
    timings: dict[str, list[float]] = {"with": [], "without": []}
    for n in range(blocks):  # each goes first every other block
        for key in ("with", "without") if n % 2 == 0 else ("without", "with"):
            timings[key].append(per_request(with_it if key == "with" else without_it, block))
    metrics.flush()  # what the handler counted; the middleware timed alone counts nothing real
    return {"requests": block * blocks, "blocks": blocks, "path": "/bench/baseline",
            **_compared(timings), **middleware_alone(requests * 10)}


def _compared(timings: dict[str, list[float]]) -> dict:
    """The two medians and their difference; and the fastest of each (the blocks or rounds a
    neighbour on the shared machine disturbed least), with theirs."""
    with_us, without_us = (round(statistics.median(timings[k]), 2) for k in ("with", "without"))
    fastest_with, fastest_without = (round(min(timings[k]), 2) for k in ("with", "without"))
    return {"with_us": with_us, "without_us": without_us,
            "cost_us": round(with_us - without_us, 2),
            "cost_pct": round((with_us - without_us) / without_us * 100, 2),
            "ratio": _ratio(with_us, without_us),
            "fastest_with_us": fastest_with, "fastest_without_us": fastest_without,
            "fastest_cost_us": round(fastest_with - fastest_without, 2)}


def middleware_alone(calls: int) -> dict:
    """Nanoseconds the middleware adds around a view that answers at once (an API route,
    resolved), against that view called directly; alternating, the faster of two each."""
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.urls import resolve

    from domain.common import metrics
    from domain.common.middleware import RequestMetricsMiddleware

    response = HttpResponse(b"{}", content_type="application/json")
    request = RequestFactory().get("/api/v1/jobs")
    request.resolver_match = resolve("/api/v1/jobs")

    def view(_request):
        return response

    wrapped = RequestMetricsMiddleware(view)

    def per_call(call) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            call(request)
        return (time.perf_counter() - started) / calls * 1e9

    alone = {"wrapped": [], "view": []}
    for _ in range(2):
        alone["wrapped"].append(per_call(wrapped))
        alone["view"].append(per_call(view))
    metrics.discard_pending()
    wrapped_ns, view_ns = min(alone["wrapped"]), min(alone["view"])
    return {"alone_calls": calls, "alone_ns": round(wrapped_ns - view_ns, 1),
            "alone_view_ns": round(view_ns, 1)}


def _redis_commands(client) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in REDIS_COMMANDS)


def per_job_cost(jobs: int, rounds: int, redis_client) -> dict:
    """Microseconds per job of the micro-batch task, with and without recording."""
    from django.db import connection

    from domain.common import metrics
    from domain.jobs.kinds import NOOP
    from domain.jobs.models import Job
    from tasks.demo import noop

    def batch() -> float:
        made = Job.objects.bulk_create([Job(kind=NOOP.name, params={},
                                            max_attempts=NOOP.retry.max_attempts)
                                        for _ in range(jobs)])
        started = time.thread_time()
        counts = noop.apply(args=[[str(job.pk) for job in made]]).get()
        elapsed = time.thread_time() - started
        if counts["succeeded"] != jobs:
            raise RuntimeError(f"metrics bench: a batch of {jobs} noop jobs did {counts}")
        return elapsed / jobs * 1e6

    batch()  # warm
    timings: dict[str, list[float]] = {"with": [], "without": []}
    commands = 0
    try:
        for n in range(rounds):  # each goes first every other round
            for on in (True, False) if n % 2 == 0 else (False, True):
                metrics.set_recording(on)
                before = _redis_commands(redis_client)
                timings["with" if on else "without"].append(batch())
                if on:
                    commands += _redis_commands(redis_client) - before
    finally:
        metrics.set_recording(True)
        connection.close()
    metrics.flush()  # the batches' counts; the recording timed alone counts nothing real
    return {"jobs_per_batch": jobs, "rounds": rounds, **_compared(timings),
            "recording_ns_per_job": recording_per_job(jobs),
            # (INFO's own count: the commandstats read itself is not among these commands)
            "redis_commands_per_job": round(commands / (jobs * rounds), 4),
            "rounds_us": {k: [round(v, 2) for v in vs] for k, vs in timings.items()}}


def recording_per_job(jobs: int) -> float:
    """Nanoseconds per job of the recording a micro-batch of `jobs` makes, alone: its claim
    and its successes counted by kind, each job's run time observed (workers/base.py)."""
    from domain.common import metrics
    from domain.jobs import metrics as job_metrics
    from domain.jobs.models import Job
    from workers.metrics import JOB_RUN_SECONDS

    batch = [Job(kind="noop") for _ in range(jobs)]
    seconds = [0.0001 * (n % 50) for n in range(jobs)]
    durations = []
    for _ in range(50):
        started = time.perf_counter()
        job_metrics.count_jobs(job_metrics.CLAIMED, batch)
        JOB_RUN_SECONDS.observe_many(seconds, "noop")
        job_metrics.count_jobs(job_metrics.SUCCEEDED, batch)
        durations.append(time.perf_counter() - started)
    metrics.discard_pending()
    return round(statistics.median(durations) / jobs * 1e9, 1)


def record_cost(calls: int) -> dict:
    """Nanoseconds of one counter increment and one histogram observation, in memory."""
    from domain.common import metrics
    from domain.jobs.metrics import JOB_TRANSITIONS
    from workers.metrics import JOB_RUN_SECONDS

    def per_call(call) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            call()
        return round((time.perf_counter() - started) / calls * 1e9, 1)

    inc = per_call(lambda: JOB_TRANSITIONS.inc("noop", "claimed"))
    observe = per_call(lambda: JOB_RUN_SECONDS.observe(0.002, "noop"))
    metrics.discard_pending()
    return {"calls": calls, "counter_inc_ns": inc, "histogram_observe_ns": observe}


def flush_cost(series: int) -> dict:
    """Milliseconds of one flush of `series` label sets (a fifth of them histograms)."""
    from domain.common import metrics
    from domain.common.middleware import HTTP_DURATION, HTTP_REQUESTS

    histograms = max(1, series // 5)

    def fill() -> None:
        for n in range(series - histograms):
            HTTP_REQUESTS.inc("GET", f"bench-flush-{n}", "200")
        for n in range(histograms):
            HTTP_DURATION.observe(0.01 * (n % 7), "GET", f"bench-flush-{n}")

    durations = []
    for _ in range(10):
        fill()
        started = time.perf_counter()
        metrics.flush()
        durations.append(time.perf_counter() - started)
    return {"series": series, "histograms": histograms,
            "ms": round(statistics.median(durations) * 1000, 3)}


def seed_jobs(cursor, finished: int, open_jobs: int) -> None:
    """`finished` succeeded or cancelled jobs and `open_jobs` queued, running, retrying or
    dead ones, of three kinds; then ANALYZE (as a table autovacuum keeps)."""
    common = ("id, kind, handler, params, status, attempts, max_attempts, replays, "
              "progress_done, traceback, worker, correlation_id, created_at, finished_at")
    cursor.execute(
        f"INSERT INTO events_job ({common}) SELECT gen_random_uuid(), "  # noqa: S608 - constants
        "(ARRAY['noop','cache_invalidation','webhook_delivery'])[1 + i %% 3], '', '{}'::jsonb, "
        "(ARRAY['succeeded','succeeded','succeeded','cancelled'])[1 + i %% 4], 1, 5, 0, 0, '', "
        "'bench', '', now() - make_interval(secs => i %% 86400), now() "
        "FROM generate_series(1, %s) i", [finished])
    cursor.execute(
        f"INSERT INTO events_job ({common}) SELECT gen_random_uuid(), "  # noqa: S608
        "(ARRAY['noop','cache_invalidation','webhook_delivery'])[1 + i %% 3], '', '{}'::jsonb, "
        "(ARRAY['queued','queued','running','retrying','dead'])[1 + i %% 5], 1, 5, 0, 0, '', "
        "'bench', '', now() - make_interval(secs => i %% 3600), NULL "
        "FROM generate_series(1, %s) i", [open_jobs])
    cursor.execute("ANALYZE events_job")


def gauges_cost(finished: int, open_jobs: int) -> dict:
    """The scrape's jobs query against a whole-table count, on a large table."""
    from django.db import connection

    from domain.common.metrics_endpoint import render
    from domain.jobs.metrics import jobs_now

    with connection.cursor() as cursor:
        seed_jobs(cursor, finished, open_jobs)

        def count_all() -> None:
            cursor.execute("SELECT count(*) FROM events_job")
            cursor.fetchone()

        count_ms = _median_ms(count_all)
    query_ms = _median_ms(jobs_now)
    render()  # the gauges cached (METRICS_GAUGE_CACHE_SECONDS)
    scrape_ms = _median_ms(render)
    open_counted = sum(n for _, status, n in jobs_now()["conveyor_jobs"])
    connection.close()
    if open_counted != open_jobs:
        raise RuntimeError(f"metrics bench: the gauges counted {open_counted} open jobs of "
                           f"{open_jobs}")
    return {"table_rows": finished + open_jobs, "open_jobs": open_jobs, "query_ms": query_ms,
            "count_all_ms": count_ms, "ratio": _ratio(query_ms, count_ms),
            "scrape_cached_ms": scrape_ms}


class MetricsScenario:
    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.cfg = suite.cfg

    def run(self) -> None:
        import redis

        from bench.run import log

        c = self.cfg
        log(f"metrics: middleware, {c['metrics_rounds']} rounds of {c['metrics_requests']} "
            "requests with and without it")
        middleware = middleware_cost(c["metrics_requests"], c["metrics_rounds"])
        log(f"metrics: per job, {c['metrics_rounds']} rounds of a {c['metrics_jobs']}-job "
            "micro-batch with recording on and off")
        client = redis.Redis(port=self.suite.stack.redis_port)
        per_job = per_job_cost(c["metrics_jobs"], c["metrics_rounds"], client)
        self.suite.reset()
        recording = record_cost(100_000)
        flush = flush_cost(c["metrics_flush_series"])
        log(f"metrics: gauges on a {c['metrics_table_rows']:,}-row jobs table")
        gauges = gauges_cost(c["metrics_table_rows"] - c["metrics_open_jobs"],
                             c["metrics_open_jobs"])
        self.suite.reset()
        self.suite.results["metrics"] = {"middleware": middleware, "per_job": per_job,
                                         "recording": recording, "flush": flush,
                                         "gauges": gauges}

"""The `metrics` scenario's tools measure what they say, small: the middleware's two handlers
differ by exactly that middleware, the per-job batches run the real task to success with
recording on and off (and only the first counts), a flush sends what it was given, the seed
makes the table it says and the gauges count its open jobs; the report shows each figure
against its baseline. No timing is asserted."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings

from bench.metrics import flush_cost, gauges_cost, middleware_cost, per_job_cost
from bench.report import table
from domain.common.metrics import family_key
from domain.common.redis import redis_client
from domain.jobs.models import Job, JobStatus
from tests.metrics_utils import fresh_metrics, scrape, value

_fresh = pytest.fixture(autouse=True)(fresh_metrics)


@pytest.mark.django_db(transaction=True)
@override_settings(ROOT_URLCONF="bench.urls")
def test_the_middleware_figure_times_both_handlers():
    figures = middleware_cost(requests=40, rounds=2)

    assert set(figures) >= {"with_us", "without_us", "cost_us", "cost_pct", "ratio",
                            "fastest_cost_us", "alone_ns", "alone_view_ns"}
    assert figures["blocks"] == 20 and figures["requests"] == 40
    assert figures["with_us"] > 0 and figures["without_us"] > 0
    # only the handler with the middleware counted its requests: 20 blocks of 2, + the warm-up
    # (the middleware timed alone counted its calls too, then forgot them)
    assert value(scrape(), "conveyor_http_requests_total", method="GET",
                 route="bench/baseline", status="200") == 40 + 40


@pytest.mark.django_db(transaction=True)
def test_the_per_job_figure_runs_the_real_task_with_recording_on_and_off():
    client = redis.Redis.from_url(settings.REDIS_URL)

    figures = per_job_cost(jobs=10, rounds=2, redis_client=client)

    # every job of every batch (a warm-up, then 2 rounds on and 2 off) succeeded
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 50
    assert figures["jobs_per_batch"] == 10 and figures["redis_commands_per_job"] >= 0
    assert figures["recording_ns_per_job"] > 0
    # and only the batches with recording on were counted (the warm-up's too)
    samples = scrape()
    assert value(samples, "conveyor_job_transitions_total", kind="noop",
                 transition="succeeded") == 30
    assert value(samples, "conveyor_job_run_seconds_count", kind="noop") == 30


@pytest.mark.django_db
def test_a_flush_figure_sends_its_label_sets():
    figures = flush_cost(series=10)

    assert figures["histograms"] == 2
    stored = redis_client().hgetall(family_key("conveyor_http_requests_total"))
    assert len(stored) == 8 and {int(v) for v in stored.values()} == {10}  # 10 flushes


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="the scenario seeds with PostgreSQL's SQL")
@pytest.mark.django_db(transaction=True)
def test_the_gauges_figure_seeds_its_table_and_counts_its_open_jobs():
    figures = gauges_cost(finished=3000, open_jobs=100)

    assert figures["table_rows"] == 3100 and figures["open_jobs"] == 100
    assert Job.objects.count() == 3100
    assert Job.objects.filter(status__in=("queued", "running", "retrying", "dead")).count() == 100
    assert {"query_ms", "count_all_ms", "ratio", "scrape_cached_ms"} <= set(figures)


def test_the_report_shows_each_figure_against_its_baseline():
    figures = {
        "middleware": {"path": "/bench/baseline", "with_us": 105.0, "without_us": 100.0,
                       "cost_us": 5.0, "cost_pct": 5.0, "ratio": 1.05, "alone_ns": 1900.0,
                       "alone_view_ns": 70.0, "fastest_cost_us": 2.1},
        "per_job": {"jobs_per_batch": 500, "with_us": 82.0, "without_us": 80.0, "cost_us": 2.0,
                    "cost_pct": 2.5, "ratio": 1.025, "redis_commands_per_job": 0.004,
                    "recording_ns_per_job": 350.0, "fastest_cost_us": 0.3},
        "recording": {"counter_inc_ns": 400.0, "histogram_observe_ns": 700.0},
        "flush": {"series": 200, "ms": 1.5},
        "gauges": {"table_rows": 1_000_000, "open_jobs": 5000, "query_ms": 4.0,
                   "count_all_ms": 60.0, "ratio": 0.067, "scrape_cached_ms": 3.0},
    }
    machine = {"cpus": 2, "python": "3.11", "postgres": "15", "redis": "7"}
    report = {"date": "2026-11-29", "mode": "full", "machine": machine, "config": {},
              "wall_seconds": 60, "results": {"metrics": figures}}

    text = table(report)

    assert "100.0 us/request without it" in text
    assert "(+5.0 us, +5.0%; fastest blocks +2.1 us)" in text
    assert "+1900.0 ns/request" in text and "its recording alone 350.0 ns/job" in text
    assert "80.0 us/job recording off" in text and "0.004 Redis commands/job" in text
    assert "60.0 ms SELECT count(*) of the table" in text and "1,000,000-row" in text

"""The `prune` scenario's tools do what they claim: the seed makes the groups it says, the
census counts them back, and after a real prune the census is what the scenario expects
(every live and recent row kept, no old finished job and no orphan attempt left); the report
sets each figure against its baseline. No timing is asserted."""

from __future__ import annotations

import pytest
from django.db import connection

from bench.prune import census, expected_after, seed
from bench.report import table
from scheduler.retention import retention_prune

pytestmark = [pytest.mark.skipif(connection.vendor != "postgresql",
                                 reason="the prune scenario seeds with PostgreSQL's SQL"),
              pytest.mark.django_db(transaction=True)]


def test_the_seed_makes_its_groups_and_a_real_prune_leaves_what_the_scenario_expects(
        settings):
    # given the scenario's table, small: 2,000 jobs, 100 old live ones, 50 events of two jobs
    settings.PRUNE_BATCH_SIZE, settings.PRUNE_PAUSE_SECONDS = 300, 0
    with connection.cursor() as cursor:
        seeded = seed(cursor, 2000, 100, 50)
        before = census(cursor)

    # then the census counts what the seed says it made
    assert seeded["old_finished"] == 1000 and seeded["recent"] == 2000 - 1000 - 100 - 100
    assert before == {"old_finished": 1000, "old_live": 100, "event_pairs": 50,
                      "recent": seeded["recent"], "jobs": 2000, "attempts": 2000,
                      "orphan_attempts": 0}

    # when the daily prune runs on it
    outcome = retention_prune()

    # then what is left is what the scenario checks for, and the prune counted the rest
    with connection.cursor() as cursor:
        assert census(cursor) == expected_after(seeded)
    assert outcome["complete"]
    assert outcome["deleted"]["events_job"] == outcome["deleted"]["events_jobattempt"] == 1000


def test_the_report_shows_the_prune_against_its_baselines():
    figures = {
        "seeded": {"jobs": 5_000_000}, "rows_deleted": 5_000_000, "rows_per_s": 40_000.0,
        "elapsed_s": 125.0, "runs": 1, "batches": 1001, "verified": True,
        "settings": {"PRUNE_BATCH_SIZE": 5000}, "worker_idle_mib": 80.0,
        "worker_peak_mib": 95.0, "rss_ratio": 1.188, "endpoint": "/api/v1/jobs/{id}",
        "rate_per_s": 50, "overlap": 1.0, "ratio": 1.5,
        "busy": {"samples": 3000, "p50_ms": 6.0, "p99_ms": 30.0},
        "idle": {"samples": 3000, "p50_ms": 5.0, "p99_ms": 20.0}}
    report = {"date": "2026-11-29T10:00:00+00:00", "mode": "full",
              "machine": {"cpus": 2, "python": "3.11", "postgres": "15", "redis": "7"},
              "results": {"prune": figures}}

    lines = table(report).splitlines()

    [rate] = [line for line in lines if "40,000 rows/s" in line]
    assert "5,000,000-job table" in rate and "every live row kept: yes" in rate
    [rss] = [line for line in lines if "peak RSS" in line]
    assert "95.0 MiB" in rss and "80.0 MiB idle" in rss and "1.19x" in rss
    [reads] = [line for line in lines if "while the prune runs" in line]
    assert "p99 30.0 ms" in reads and "before: p50 5.0 ms, p99 20.0 ms" in reads
    assert "1.50x (p99)" in reads

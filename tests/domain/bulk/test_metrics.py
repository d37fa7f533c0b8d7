"""Bulk rows counted by operation as each chunk commits (so `rate()` is rows per second), a
dry run's too; and the runs not yet finished counted when scraped."""

from __future__ import annotations

import pytest

from domain.bulk.services import bulk_run_pause
from tests.bulk_utils import fresh, make_products, run_to_end, start
from tests.metrics_utils import TOKEN, reset_metrics, scrape, value

pytestmark = pytest.mark.django_db(transaction=True)

REPRICE = "catalog.reprice"


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_GAUGE_CACHE_SECONDS = 0
    reset_metrics()
    yield
    reset_metrics()


def test_rows_are_counted_by_operation_as_chunks_commit():
    # given 7 coffee products and 3 tea ones, repriced in chunks of 2 (a real run, in process)
    make_products(7, category="coffee")
    make_products(3, category="tea")
    run = run_to_end(start(REPRICE, {"category": "coffee", "percent": 10}, chunk_size=2))
    assert fresh(run).rows_done == 7

    # and a dry run over the tea
    run_to_end(start(REPRICE, {"category": "tea", "percent": 10}, dry_run=True))

    # then the rows are counted, changed or not, and nothing else
    samples = scrape()
    assert value(samples, "conveyor_bulk_rows_total", operation=REPRICE) == 10
    assert value(samples, "conveyor_bulk_rows_changed_total", operation=REPRICE) == 10
    assert value(samples, "conveyor_bulk_rows_total", operation="catalog.set_status") == 0
    assert value(samples, "conveyor_bulk_runs", operation=REPRICE, status="running") == 0


def test_runs_not_finished_are_counted_when_scraped():
    # given a run waiting for its worker (a dry run: it holds no rows) and another paused
    make_products(3, category="coffee")
    make_products(3, category="tea")
    start(REPRICE, {"category": "coffee", "percent": 10}, dry_run=True)
    paused = start(REPRICE, {"category": "tea", "percent": 10})
    bulk_run_pause(run=paused)

    samples = scrape()

    assert {status: value(samples, "conveyor_bulk_runs", operation=REPRICE, status=status)
            for status in ("queued", "running", "paused")} == {
        "queued": 1, "running": 0, "paused": 1}

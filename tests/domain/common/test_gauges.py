"""Gauge sets: declared once, computed when scraped; a source that does not answer is asked
once per scrape (the collector and the cache skip it for the rest of that scrape)."""

from __future__ import annotations

import pytest

from domain.common import metrics
from domain.common.gauges import Gauge, GaugeSet
from domain.common.metrics import family_key
from domain.common.middleware import HTTP_REQUESTS
from domain.common.redis import redis_client
from tests.metrics_utils import fresh_metrics, scrape_with_redis_down, value

pytestmark = pytest.mark.django_db


_fresh = pytest.fixture(autouse=True)(fresh_metrics)


def test_a_gauge_set_and_a_gauge_are_declared_once():
    with pytest.raises(ValueError, match="gauge set 'jobs' is declared twice"):
        GaugeSet("jobs", [Gauge("conveyor_test_never", "never")], dict, needs=())
    with pytest.raises(ValueError, match="declared twice"):
        GaugeSet("test-only", [Gauge("conveyor_jobs", "a name taken")], dict, needs=())


def test_a_redis_that_does_not_answer_is_asked_once_per_scrape(settings, caplog):
    # given counts pending and a Redis that does not answer
    HTTP_REQUESTS.inc("GET", "metrics-once-probe", "200")
    # when scraped
    samples = scrape_with_redis_down(settings)

    # then the flush found it down, and nothing else in that scrape asked it again: no read of
    # the counters, no gauge cache read or written
    assert value(samples, "conveyor_metrics_source_up", source="counters") == 0
    assert value(samples, "conveyor_metrics_source_up", source="webhook_endpoints") == 1
    assert "counters unreadable" not in caplog.text
    assert "not cached" not in caplog.text
    # and the counts are still kept for Redis' return
    assert metrics.flush() is True
    stored = redis_client().hget(family_key("conveyor_http_requests_total"),
                                 metrics._field(("GET", "metrics-once-probe", "200")))
    assert int(stored) == 1

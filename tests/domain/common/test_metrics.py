"""The metric primitives against a real Redis: counts made in several processes add up, a
forked child never sends its parent's counts again, a flush Redis refuses is kept and sent
once later, the flushing thread sends without being asked, histograms come out cumulative,
and the README names every metric the code declares."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from domain.common import metrics
from domain.common import redis as project_redis
from domain.common.gauges import gauge_sets
from domain.common.metrics import Counter, Histogram, family_key
from domain.common.metrics_endpoint import SOURCE_UP
from domain.common.middleware import HTTP_DURATION, HTTP_REQUESTS
from domain.common.redis import redis_client
from tests.conftest import wait_for
from tests.metrics_utils import fresh_metrics, scrape, scrape_with_redis_down, value

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.django_db


_fresh = pytest.fixture(autouse=True)(fresh_metrics)


def _stored(name: str, *labels: str) -> int:
    raw = redis_client().hget(family_key(name), metrics._field(labels))
    return int(raw) if raw is not None else 0


def test_counts_of_several_processes_add_up_in_redis():
    # given another process (its own interpreter, as a worker on another machine would be)
    # that counts 7 and exits
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "CONVEYOR_TEST_RUN_ID": str(settings.TEST_RUN_ID), "REDIS_URL": settings.REDIS_URL,
           "CONVEYOR_EMBEDDED_REDIS_QUIET": "1"}
    script = ("import django; django.setup()\n"
              "from domain.common.middleware import HTTP_REQUESTS\n"
              "for _ in range(7):\n    HTTP_REQUESTS.inc('GET', 'metrics.probe', '200')\n")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=120)

    # and this process counts 5
    for _ in range(5):
        HTTP_REQUESTS.inc("GET", "metrics.probe", "200")

    # when the endpoint is scraped, then it shows the sum: the other process flushed at exit
    # (atexit), this one before answering
    assert value(scrape(), "conveyor_http_requests_total", method="GET", route="metrics.probe",
                 status="200") == 12


def test_a_forked_child_does_not_send_its_parents_counts_again():
    # given 5 counted and not yet flushed in this process
    HTTP_REQUESTS.inc("GET", "metrics.fork", "200", amount=5)

    # when a child forked now counts 1 and flushes (as a Celery pool process would)
    pid = os.fork()
    if pid == 0:  # the child: nothing but the metrics, then out without Python's exit
        code = 1
        try:
            HTTP_REQUESTS.inc("GET", "metrics.fork", "200")
            code = 0 if metrics.flush() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    metrics.flush()

    # then the child sent its 1 and the parent its 5: 6, not 11
    assert _stored("conveyor_http_requests_total", "GET", "metrics.fork", "200") == 6


def test_a_flush_redis_refuses_is_kept_and_sent_once_later(settings):
    # given counts made while REDIS_URL points at a port where nothing listens
    HTTP_REQUESTS.inc("GET", "metrics.outage", "200", amount=3)
    original = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    project_redis._client = None
    try:
        assert metrics.flush() is False
        HTTP_REQUESTS.inc("GET", "metrics.outage", "200", amount=2)
        assert metrics.flush() is False
    finally:
        settings.REDIS_URL = original
        project_redis._client = None

    # when Redis answers again, then everything counted arrives, once
    assert metrics.flush() is True
    assert metrics.flush() is True  # nothing left to send twice
    assert _stored("conveyor_http_requests_total", "GET", "metrics.outage", "200") == 5


def test_the_flushing_thread_sends_counts_without_being_asked():
    # when a count is made and nobody flushes
    HTTP_REQUESTS.inc("GET", "metrics-thread-probe", "200", amount=4)

    # then the process's thread adds it to Redis within about METRICS_FLUSH_SECONDS
    assert settings.METRICS_FLUSH_SECONDS > 0
    wait_for(lambda: _stored("conveyor_http_requests_total", "GET", "metrics-thread-probe",
                             "200") == 4, timeout=30, message="the flushing thread")


def test_histograms_come_out_cumulative_with_their_sum_and_count():
    # given observations on and between bucket bounds (a bound is included in its bucket)
    for seconds in (0.005, 0.007, 0.1, 0.1, 30.0):
        HTTP_DURATION.observe(seconds, "GET", "metrics-histogram-probe")

    # when scraped
    samples = scrape()

    # then each bucket counts the values at or under its bound
    def bucket(le: str) -> float | None:
        return value(samples, "conveyor_http_request_duration_seconds_bucket", method="GET",
                     route="metrics-histogram-probe", le=le)

    assert [bucket(le) for le in ("0.005", "0.01", "0.05", "0.1", "10.0", "+Inf")] == [
        1, 2, 2, 4, 4, 5]
    assert value(samples, "conveyor_http_request_duration_seconds_count", method="GET",
                 route="metrics-histogram-probe") == 5
    assert value(samples, "conveyor_http_request_duration_seconds_sum", method="GET",
                 route="metrics-histogram-probe") == pytest.approx(30.212)


def test_with_redis_down_the_endpoint_still_answers_and_says_so(settings):
    # given a Redis that does not answer
    settings.METRICS_GAUGE_CACHE_SECONDS = 0
    # when scraped
    samples = scrape_with_redis_down(settings)

    # then it answers, with the counters marked down (the gauges' own test is in
    # tests/domain/jobs/test_metrics.py)
    assert value(samples, "conveyor_metrics_source_up", source="counters") == 0
    assert not any(name == "conveyor_http_requests_total" for name, _ in samples)


def test_a_label_set_must_match_the_declaration():
    with pytest.raises(ValueError, match="takes"):
        HTTP_REQUESTS.inc("GET", "route-only")
    with pytest.raises(ValueError, match="takes"):
        HTTP_DURATION.observe(0.1, "GET")


def test_a_metric_is_declared_once_and_a_counter_ends_in_total():
    with pytest.raises(ValueError, match="declared twice"):
        Counter("conveyor_http_requests_total", "again", ("method",))
    with pytest.raises(ValueError, match="declared twice"):
        Histogram("conveyor_http_request_duration_seconds", "again")
    with pytest.raises(ValueError, match="_total"):
        Counter("conveyor_no_suffix", "no suffix")


def test_recording_can_be_switched_off_and_on():
    metrics.set_recording(False)
    try:
        HTTP_REQUESTS.inc("GET", "metrics.off", "200", amount=3)
    finally:
        metrics.set_recording(True)
    HTTP_REQUESTS.inc("GET", "metrics.off", "200")
    metrics.flush()
    assert _stored("conveyor_http_requests_total", "GET", "metrics.off", "200") == 1


def test_a_command_redis_refuses_keeps_only_what_it_carried():
    # given the counter's key holding something else than a hash (Redis refuses HINCRBY on it
    # inside the MULTI/EXEC and applies the other commands: the histogram's)
    client = redis_client()
    client.set(family_key("conveyor_http_requests_total"), "not a hash")
    HTTP_REQUESTS.inc("GET", "metrics-wrongtype-probe", "200", amount=2)
    HTTP_DURATION.observe(0.2, "GET", "metrics-wrongtype-probe")

    # when flushed, then only the refused count stays pending; the rest arrived, once
    assert metrics.flush() is False
    client.delete(family_key("conveyor_http_requests_total"))
    assert metrics.flush() is True
    assert _stored("conveyor_http_requests_total", "GET", "metrics-wrongtype-probe", "200") == 2
    assert _stored("conveyor_http_request_duration_seconds", "GET", "metrics-wrongtype-probe",
                   "0.25") == 1


def test_the_readme_documents_every_metric():
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(conveyor_[a-z_]+)`", section))
    declared = set(metrics.families()) | {g.name for s in gauge_sets().values()
                                          for g in s.gauges} | {SOURCE_UP}
    assert declared - documented == set(), "metrics missing from README ## Metrics"
    assert documented - declared == set(), "README names metrics the code does not declare"

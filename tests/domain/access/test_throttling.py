"""Per-key rate limits by scope family, counted in Redis; the limiter fails open, whatever
Redis does, and says so once per outage."""

import logging
import time
from types import SimpleNamespace

import pytest
from django.urls import reverse

import domain.common.redis as project_redis
from domain.access import throttling
from domain.events.models import Event
from tests.faults.procs import RedisServer, free_port

pytestmark = pytest.mark.django_db

PING = {"type": "demo.ping", "payload": {"message": "hi"}}


@pytest.fixture
def low_rates(settings, monkeypatch):
    settings.API_THROTTLE_RATES = {"publish": "3/m", "read": "5/m", "write": "2/m"}
    # The counters are fixed one-minute windows: a test that straddled a window's end would
    # find its budget reset halfway. The limiter's clock stands still one second into a
    # window for the test (its own module's `time` only; nothing else is touched).
    now = time.time() // 60 * 60 + 1
    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: now))


# --- throttling -----------------------------------------------------------------------

def test_publish_over_the_rate_is_429_with_retry_after(client_all, low_rates):
    url = reverse("event-publish")
    codes = [client_all.post(url, PING, format="json").status_code for _ in range(3)]
    assert codes == [202, 202, 202]
    response = client_all.post(url, PING, format="json")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) == 59  # the window's end, from the clock's second 1
    assert Event.objects.count() == 3  # the refused one wrote nothing


def test_rates_are_per_key_and_per_scope(make_client, low_rates):
    first, second = make_client(name="first"), make_client(name="second")
    url = reverse("event-publish")
    for _ in range(3):
        first.post(url, PING, format="json")
    assert first.post(url, PING, format="json").status_code == 429
    # another key has its own budget
    assert second.post(url, PING, format="json").status_code == 202
    # and reads are counted apart from publishes
    assert first.get(reverse("event-type-list")).status_code == 200


def test_batch_counts_against_publish(client_all, low_rates):
    batch = {"events": [PING, PING]}
    for _ in range(3):
        assert client_all.post(reverse("event-batch-publish"), batch,
                               format="json").status_code == 202
    assert client_all.post(reverse("event-publish"), PING, format="json").status_code == 429


def test_writes_throttled_separately(client_all, low_rates):
    url = reverse("job-list")
    body = {"kind": "cache_invalidation", "params": {"keys": ["a"]}}
    assert [client_all.post(url, body, format="json").status_code for _ in range(3)] == [
        202, 202, 429]
    # reading the same endpoint is another scope
    assert client_all.get(url).status_code == 200


def test_limiter_unavailable_lets_requests_through(client_all, low_rates, monkeypatch,
                                                   settings):
    # a Redis that does not answer (nothing listens on port 1), through the project's client
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(project_redis, "_client", None)
    url = reverse("event-publish")
    codes = [client_all.post(url, PING, format="json").status_code for _ in range(5)]
    assert codes == [202] * 5


@pytest.fixture
def limiter_redis(settings, monkeypatch, tmp_path):
    """A Redis of the test's own as the limiter's (REDIS_URL), which the test may fill; and a
    fresh outage record that ends an outage at the first success (no quiet period)."""
    server = RedisServer(free_port(), tmp_path / "redis")
    server.start()
    try:
        settings.REDIS_URL = server.url()
        monkeypatch.setattr(project_redis, "_client", None)
        monkeypatch.setattr(throttling, "outage", throttling.LimiterOutage(quiet_seconds=0))
        yield server.client()
    finally:
        project_redis._client = None
        server.stop(kill=True)


def test_a_full_redis_lets_requests_through_and_says_so_once(client_all, low_rates,
                                                              limiter_redis, caplog):
    # given the limiter's Redis out of memory: its cap below what it holds, no eviction, so
    # every write (the counter's SET and INCR) is refused with OOM
    limiter_redis.config_set("maxmemory-policy", "noeviction")
    limiter_redis.config_set("maxmemory", 1)
    url = reverse("event-publish")

    # when a key publishes more often than its rate allows
    with caplog.at_level(logging.WARNING, logger="domain.access.throttling"):
        codes = [client_all.post(url, PING, format="json").status_code for _ in range(5)]

    # then every request is let through, and the log says so once, not per request
    assert codes == [202] * 5
    lines = [r.getMessage() for r in caplog.records if r.name == "domain.access.throttling"]
    assert len(lines) == 1 and "rate limiter unavailable" in lines[0]
    assert "OutOfMemoryError" in lines[0]

    # when memory is there again
    caplog.clear()
    limiter_redis.config_set("maxmemory", 0)
    with caplog.at_level(logging.WARNING, logger="domain.access.throttling"):
        codes = [client_all.post(url, PING, format="json").status_code for _ in range(4)]

    # then the limiter counts again (3 a minute), and the log says so once
    assert codes == [202, 202, 202, 429]
    lines = [r.getMessage() for r in caplog.records if r.name == "domain.access.throttling"]
    assert lines == ["rate limiter available again, requests are counted"]


def test_a_flapping_redis_is_one_outage_until_it_stays_quiet(caplog):
    # given an outage record with a quiet period
    outage = throttling.LimiterOutage(quiet_seconds=60)

    # when Redis fails, answers, fails again within the period, and answers again
    with caplog.at_level(logging.WARNING, logger="domain.access.throttling"):
        outage.failed(RuntimeError("OOM"))
        outage.succeeded()
        outage.failed(RuntimeError("OOM"))
        outage.succeeded()

    # then it is one outage, still going: one line, and no "available again" yet
    assert [r.getMessage() for r in caplog.records] == [
        "rate limiter unavailable, requests are let through uncounted until Redis answers "
        "again error=RuntimeError('OOM')"]
    assert outage.down

    # when the quiet period has passed since the last failure, the next success ends it
    outage.last_failure -= 60
    outage.succeeded()
    assert not outage.down


def test_unauthenticated_requests_are_401_not_counted(client, low_rates):
    for _ in range(5):
        assert client.post(reverse("event-publish"), PING,
                           content_type="application/json").status_code == 401


def test_a_high_limit_is_counted_in_shares_and_never_exceeded(client_all, settings, low_rates):
    # given a read limit of 500 a minute: this process takes shares of 5 from Redis
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "read": "500/m"}
    assert throttling.lease_size(500) == 5
    counter = project_redis.redis_client()

    def incrby_calls() -> int:
        return counter.info("commandstats").get("cmdstat_incrby", {}).get("calls", 0)

    # when the key reads 500 times
    before = incrby_calls()
    statuses = [client_all.get(reverse("job-list")).status_code for _ in range(500)]
    counted = incrby_calls() - before

    # then all 500 are served, with one Redis count per share (100 counts of 5, not 500 of 1)
    assert set(statuses) == {200}
    keys = list(counter.scan_iter(match=f"*throttle:read:{client_all.api_key.pk}:*"))
    assert len(keys) == 1 and int(counter.get(keys[0])) == 500
    assert counted == 100

    # and the 501st is refused: the limit holds exactly
    refused = client_all.get(reverse("job-list"))
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0

"""Helpers for the metrics tests: a clean slate (nothing pending in this process, nothing in
Redis), a scrape through the real endpoint, and the exposition read back with
prometheus_client's own parser."""

from __future__ import annotations

from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from domain.common import metrics
from domain.common.redis import redis_client, redis_key

TOKEN = "t" * 40
Samples = dict[tuple[str, frozenset], float]


def reset_metrics() -> None:
    """Forget this process's unflushed counts and every metric and gauge cache in Redis (this
    run's keys only: REDIS_KEY_PREFIX carries the run id)."""
    metrics.discard_pending()
    client = redis_client()
    keys = list(client.scan_iter(redis_key("metrics", "*"), count=1000))
    if keys:
        client.delete(*keys)


def parse(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(client: Client | None = None, *, token: str = TOKEN, **extra) -> Samples:
    """GET /metrics with the scrape token (the caller's `settings` fixture sets it)."""
    assert token == settings.METRICS_TOKEN, "set settings.METRICS_TOKEN = TOKEN first"
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}",
                                        **extra)
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value; None if the exposition has no such sample."""
    return samples.get((name, frozenset(labels.items())))


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample, labels in samples
            if sample == name and label in dict(labels)}


def fresh_metrics(settings):
    """A test's metrics start from nothing and leave nothing (scraped with TOKEN). A test
    module takes it with `_fresh = pytest.fixture(autouse=True)(fresh_metrics)`."""
    settings.METRICS_TOKEN = TOKEN
    reset_metrics()
    yield
    reset_metrics()


def scrape_with_redis_down(settings) -> Samples:
    """A scrape while the project's Redis does not answer (a closed port), then Redis back."""
    from domain.common import redis as project_redis

    original = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    project_redis._client = None
    try:
        return scrape()
    finally:
        settings.REDIS_URL = original
        project_redis._client = None

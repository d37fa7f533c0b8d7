"""Gauges: current counts computed when `GET /metrics` is scraped, by the sets the apps declare
(one query, or one round of broker calls, per set), each answer cached in Redis for
METRICS_GAUGE_CACHE_SECONDS so that many scrapers cost one computation per period. Counts
that only grow are counters (domain/common/metrics.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

import redis
from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric

from domain.common.metrics import claim_name
from domain.common.redis import redis_client, redis_key

logger = logging.getLogger(__name__)

_gauge_sets: dict[str, GaugeSet] = {}


@dataclass(frozen=True)
class Gauge:
    name: str
    documentation: str
    labels: tuple[str, ...] = ()


# {gauge name: [[label value, …, value], …]}: what a set's `read` answers (JSON, cached as is).
GaugeValues = dict[str, list[list]]


class SourceUnavailable(Exception):
    """A gauge set not read: what it needs did not answer earlier in the same scrape."""


@dataclass
class Scrape:
    """What the scrape in progress has learnt: the gauge sets read (a set another builds on
    is read once), and what did not answer. A source that does not answer is not asked again
    in the same scrape: a database or a Redis that drops packets costs its connect timeout
    once, not once per gauge set, and the scrape stays inside Prometheus' own timeout."""

    values: dict[str, GaugeValues] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)


current_scrape: ContextVar[Scrape | None] = ContextVar("metrics_scrape", default=None)
# Errors that mean "Redis did not answer" (not "Redis refused this command").
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class GaugeSet:
    """Gauges computed together by one function (one query, one round of broker calls) when
    `/metrics` is scraped. Its answer is kept in Redis for METRICS_GAUGE_CACHE_SECONDS, so
    many scrapers, or one scraper reaching many API processes, cost one computation per
    period. `source` names it in `conveyor_metrics_source_up`; `needs` names what it reads
    (`database`, `broker`): when one of them fails a set, the sets that need it are not
    tried again in that scrape."""

    def __init__(self, source: str, gauges: Sequence[Gauge], read: Callable[[], GaugeValues],
                 *, needs: Sequence[str]) -> None:
        if source in _gauge_sets:
            raise ValueError(f"gauge set {source!r} is declared twice")
        for gauge in gauges:
            claim_name(gauge.name)
        self.source, self.gauges, self.read = source, tuple(gauges), read
        self.needs = frozenset(needs)
        self.key = redis_key("metrics", "gauges", source)
        _gauge_sets[source] = self

    def current(self) -> GaugeValues:
        """The cached answer, or a fresh one (then cached); without Redis, a fresh one."""
        scrape = current_scrape.get() or Scrape()
        if self.source in scrape.values:
            return scrape.values[self.source]
        down = scrape.down & self.needs
        if down:
            raise SourceUnavailable(f"{', '.join(sorted(down))} did not answer this scrape")
        values = self._cached(scrape)
        if values is None:
            try:
                values = self.read()
            except Exception:
                scrape.down |= self.needs
                raise
            self._store(values, scrape)
        scrape.values[self.source] = values
        return values

    def _cached(self, scrape: Scrape) -> GaugeValues | None:
        if "redis" in scrape.down:
            return None
        try:
            raw = redis_client().get(self.key)
        except redis.exceptions.RedisError as exc:
            if isinstance(exc, REDIS_DOWN):
                scrape.down.add("redis")
            return None
        return None if raw is None else json.loads(raw)

    def _store(self, values: GaugeValues, scrape: Scrape) -> None:
        ttl = settings.METRICS_GAUGE_CACHE_SECONDS
        if ttl <= 0 or "redis" in scrape.down:
            return
        try:
            redis_client().set(self.key, json.dumps(values), px=int(ttl * 1000))
        except redis.exceptions.RedisError as exc:
            logger.warning("metrics: gauges %s not cached error=%r", self.source, exc)
            if isinstance(exc, REDIS_DOWN):
                scrape.down.add("redis")

    def families(self, values: GaugeValues) -> Iterator[Metric]:
        for gauge in self.gauges:
            metric = GaugeMetricFamily(gauge.name, gauge.documentation, labels=gauge.labels)
            for *labels, value in values.get(gauge.name, []):
                metric.add_metric([str(v) for v in labels], value)
            yield metric


def gauge_sets() -> dict[str, GaugeSet]:
    return dict(_gauge_sets)

"""Counters and histograms for `GET /metrics`, summed in Redis across every process and machine.

**Why Redis, and not prometheus_client's multiprocess mode.** A scrape reaches one gunicorn
process on one machine, but the counts it must show are made everywhere: in every gunicorn
process of every API container, and in every worker process of every worker container, on
other machines (compose scales workers across machines against one broker and one database).
prometheus_client's multiprocess mode sums the files its processes write into one shared
directory: it serves the processes of one machine and no others, and it would still need a
port per machine for Prometheus to find. Every Conveyor process already reaches one Redis
(`REDIS_URL`), so each process adds its counts there and the endpoint reads the sums:

- A process records into memory (`Counter.inc`, `Histogram.observe`: a lock and a dict
  update, about a microsecond; never a Redis round trip per request or per job). A thread of
  its own adds what accumulated to Redis at most once per METRICS_FLUSH_SECONDS (1 s): one
  MULTI/EXEC of HINCRBY (counters, histogram buckets) and HINCRBYFLOAT (histogram sums), one
  hash per metric, a field per label set. A process flushes again when it exits (atexit;
  a Celery pool process at `worker_process_shutdown`, workers/metrics.py), and the process
  serving a scrape flushes its own counts first.
- The endpoint reads those hashes (one pipeline) through a prometheus_client Collector and
  renders them with prometheus_client's own exposition (`render`).
- Gauges (current counts) are not pushed by anyone: they are computed when scraped, from the
  database and the broker, by the `GaugeSet`s the apps register, and each set's answer is
  kept in Redis for METRICS_GAUGE_CACHE_SECONDS, so any number of scrapers and API processes
  costs one computation per set per period.

**What can be lost.** Counts a process made since its last flush, if it dies without exiting
(kill -9, OOM, a lost machine): at most one second of that process's counts. If Redis does
not answer, a flush keeps its counts and adds them to the next one (memory stays bounded: a
process holds one number per label set, and label values are bounded by design: routes, job
kinds, event types, queues, never ids). Counters in Redis only grow; a Redis restart without
persistence starts them at zero again, which Prometheus reads as a counter reset (`rate()`
and `increase()` handle it). The database stays the truth about jobs; these counters count
what the processes recorded, which a rare race (a worker taken for dead that wakes and
records) can make one more than the rows say.
"""

from __future__ import annotations

import atexit
import bisect
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

import redis
from django.conf import settings
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from domain.common.redis import redis_client, redis_key

logger = logging.getLogger(__name__)

# Latency of API requests, seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# How long work runs, seconds: a cache invalidation in milliseconds, a bulk slice in a minute.
WORK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)

_families: dict[str, Counter | Histogram] = {}
_gauge_sets: dict[str, GaugeSet] = {}
_recording = True


def _check_new(name: str) -> None:
    if name in _families or any(g.name == name for s in _gauge_sets.values() for g in s.gauges):
        raise ValueError(f"metric {name!r} is declared twice")


def _field(values: Iterable[str]) -> str:
    return json.dumps(list(values), separators=(",", ":"))


def family_key(name: str) -> str:
    """The Redis hash holding a counter's or a histogram's sums."""
    return redis_key("metrics", name)


class Counter:
    """A count that only grows, by label values (bounded sets only: never an id or a path).
    `initial`: label sets known in advance, shown as 0 before anything is counted, so that an
    alert on `increase()` sees the first one."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = (), *,
                 initial: Callable[[], Iterable[Sequence[str]]] | None = None) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r}: a counter's name ends in _total")
        _check_new(name)
        self.name, self.documentation, self.labels = name, documentation, tuple(labels)
        self.initial = initial
        _families[name] = self

    def inc(self, *values: str, amount: int = 1) -> None:
        # On every request and job: kept to a lock and a dict update (bench --only metrics).
        if not _recording or not amount:
            return
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes {self.labels}, not {values}")
        pending, key = _pending, (self.name, values)
        with pending.lock:
            pending.counts[key] = pending.counts.get(key, 0) + amount
        if not pending.started:
            pending.start()

    def family(self, stored: dict[bytes, bytes]) -> Metric:
        metric = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        seen = set()
        for key, value in sorted(stored.items()):
            values = tuple(json.loads(key))
            seen.add(values)
            metric.add_metric(values, int(value))
        for values in self.initial() if self.initial else ():
            if tuple(values) not in seen:
                metric.add_metric(tuple(values), 0)
        return metric


class Histogram:
    """How values (durations) fall into buckets, by label values; Prometheus' `le` buckets,
    each value counted in the first bucket whose bound is at least the value."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = (), *,
                 buckets: Sequence[float] = WORK_BUCKETS) -> None:
        _check_new(name)
        self.name, self.documentation, self.labels = name, documentation, tuple(labels)
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self.bucket_names = (*(floatToGoString(b) for b in self.bounds), "+Inf")
        _families[name] = self

    def observe(self, value: float, *values: str) -> None:
        if not _recording:
            return
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes {self.labels}, not {values}")
        index = bisect.bisect_left(self.bounds, value)
        pending, key = _pending, (self.name, values)
        with pending.lock:
            row = pending.histograms.get(key)
            if row is None:
                row = pending.histograms[key] = [0] * (len(self.bounds) + 2)
            row[index] += 1
            row[-1] += value
        if not pending.started:
            pending.start()

    def observe_many(self, observed: Sequence[float], *values: str) -> None:
        """Several values of one label set at once (a micro-batch's jobs): one lock taken."""
        if not _recording or not observed:
            return
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes {self.labels}, not {values}")
        _pending.observe(self, values, observed)

    def family(self, stored: dict[bytes, bytes]) -> Metric:
        metric = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        rows: dict[tuple, dict[str, float]] = {}
        for key, value in stored.items():
            *values, bucket = json.loads(key)
            rows.setdefault(tuple(values), {})[bucket] = float(value)
        for values, row in sorted(rows.items()):
            cumulative, buckets = 0, []
            for bucket in self.bucket_names:  # stored per bucket; Prometheus wants them summed
                cumulative += int(row.get(bucket, 0))
                buckets.append((bucket, cumulative))
            metric.add_metric(values, buckets, row.get("sum", 0.0))
        return metric


class _Pending:
    """This process's counts not yet added to Redis."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flushing = threading.Lock()  # one flush at a time (the thread, exit, a scrape)
        self.counts: dict[tuple[str, tuple], int] = {}
        # Per histogram and label set: a count per bucket (the last: +Inf), then the sum.
        self.histograms: dict[tuple[str, tuple], list[float]] = {}
        self.starting = threading.Lock()
        self.started = False  # the flushing thread (none when METRICS_FLUSH_SECONDS is 0)
        self.warned_at = 0.0

    def observe(self, histogram: Histogram, values: tuple, observed: Sequence[float]) -> None:
        bounds = histogram.bounds
        key = (histogram.name, values)
        with self.lock:
            row = self.histograms.get(key)
            if row is None:
                row = self.histograms[key] = [0] * (len(bounds) + 2)
            for value in observed:
                row[bisect.bisect_left(bounds, value)] += 1
                row[-1] += value
        if not self.started:
            self.start()

    def start(self) -> None:
        with self.starting:
            if self.started:
                return
            self.started = True
            interval = settings.METRICS_FLUSH_SECONDS
            if interval > 0:
                threading.Thread(target=_flush_forever, args=(self, interval),
                                 name="metrics-flusher", daemon=True).start()

    def take(self) -> tuple[dict, dict]:
        with self.lock:
            counts, histograms = self.counts, self.histograms
            self.counts, self.histograms = {}, {}
        return counts, histograms

    def give_back(self, counts: dict, histograms: dict) -> None:
        """A flush that failed: its counts go into the next one."""
        with self.lock:
            for key, amount in counts.items():
                self.counts[key] = self.counts.get(key, 0) + amount
            for key, row in histograms.items():
                mine = self.histograms.setdefault(key, [0] * len(row))
                for index, value in enumerate(row):
                    mine[index] += value


_pending = _Pending()


def _forget_the_parents_counts() -> None:
    # A forked child (a Celery pool process, a gunicorn worker under --preload) starts with a
    # copy of its parent's memory: the parent flushes those counts itself, so the child must
    # not send them again; and the parent's flushing thread does not exist in the child.
    global _pending
    _pending = _Pending()


os.register_at_fork(after_in_child=_forget_the_parents_counts)


def flush() -> bool:
    """Add this process's pending counts to Redis now; False if Redis did not take them (they
    are kept for the next flush)."""
    return _flush() is None


def _flush() -> BaseException | None:
    """`flush`, answering what Redis said instead of the counts it refused (None: nothing)."""
    pending = _pending
    with pending.flushing:
        counts, histograms = pending.take()
        if not counts and not histograms:
            return None
        # One MULTI/EXEC: a Redis that cannot queue it (out of memory, down) applies none of
        # it, and all of it is kept; a command Redis refuses inside it (a key of the wrong
        # type) fails alone, and only what it carried is kept.
        sent: list[tuple[dict, tuple, int | None, float]] = []
        try:
            pipe = redis_client().pipeline(transaction=True)
            for (name, values), amount in counts.items():
                pipe.hincrby(family_key(name), _field(values), amount)
                sent.append((counts, (name, values), None, amount))
            for (name, values), row in histograms.items():
                key = family_key(name)
                for index, bucket in enumerate(_families[name].bucket_names):
                    if row[index]:
                        pipe.hincrby(key, _field((*values, bucket)), int(row[index]))
                        sent.append((histograms, (name, values), index, row[index]))
                pipe.hincrbyfloat(key, _field((*values, "sum")), row[-1])
                sent.append((histograms, (name, values), -1, row[-1]))
            replies = pipe.execute(raise_on_error=False)
        except redis.exceptions.RedisError as exc:
            pending.give_back(counts, histograms)
            _warn(pending, exc)
            return exc
    refused = [(item, reply) for item, reply in zip(sent, replies, strict=True)
               if isinstance(reply, Exception)]
    if refused:
        pending.give_back(*_only([item for item, _ in refused], histograms))
        _warn(pending, refused[0][1])
        return refused[0][1]
    return None


def _only(refused: list[tuple[dict, tuple, int | None, float]], histograms: dict
          ) -> tuple[dict, dict]:
    """The part of a flush Redis refused, as counts to give back."""
    counts: dict = {}
    rows: dict = {}
    for target, key, index, amount in refused:
        if target is histograms:
            row = rows.setdefault(key, [0] * len(histograms[key]))
            row[index] += amount
        else:
            counts[key] = amount
    return counts, rows


def _warn(pending: _Pending, exc: BaseException) -> None:
    now = time.monotonic()
    if now - pending.warned_at > 60:  # a Redis outage is one line a minute, not one a second
        pending.warned_at = now
        logger.warning("metrics: counts kept for the next flush, Redis did not take them "
                       "error=%r", exc)


def _flush_forever(pending: _Pending, interval: float) -> None:
    while _pending is pending:
        time.sleep(interval)
        try:
            flush()
        except Exception:  # a bug must not end the thread: every later count would stay here
            logger.exception("metrics: flush failed")


atexit.register(flush)


def discard_pending() -> None:
    """Forget this process's counts not yet flushed, after any flush in progress (tests and
    the benchmark start from a known state with it)."""
    with _pending.flushing:
        _pending.take()


def set_recording(on: bool) -> None:
    """Switch recording off (every `inc` and `observe` returns at once) or on again: the
    benchmark measures the work with and without it in one run."""
    global _recording
    _recording = on


# --- Gauges: computed when scraped, cached in Redis --------------------------------------------

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
class _Scrape:
    """What the scrape in progress has learnt: the gauge sets read (a set another builds on
    is read once), and what did not answer. A source that does not answer is not asked again
    in the same scrape: a database or a Redis that drops packets costs its connect timeout
    once, not once per gauge set, and the scrape stays inside Prometheus' own timeout."""

    values: dict[str, GaugeValues] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)


_scrape: ContextVar[_Scrape | None] = ContextVar("metrics_scrape", default=None)
# Errors that mean "Redis did not answer" (not "Redis refused this command").
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class GaugeSet:
    """Gauges computed together by one function (one query, one round of broker calls) when
    `/metrics` is scraped. Its answer is kept in Redis for METRICS_GAUGE_CACHE_SECONDS, so
    many scrapers, or one scraper reaching many API processes, cost one computation per
    period. `source` names it in `conveyor_metrics_source_up`; `needs` names what it reads
    (`database`, `broker`): when one of them fails a set, the sets that need it are not
    tried again in that scrape."""

    def __init__(self, source: str, gauges: Sequence[Gauge], read: Callable[[], GaugeValues],
                 *, needs: Sequence[str]) -> None:
        for gauge in gauges:
            _check_new(gauge.name)
        if source in _gauge_sets:
            raise ValueError(f"gauge set {source!r} is declared twice")
        self.source, self.gauges, self.read = source, tuple(gauges), read
        self.needs = frozenset(needs)
        self.key = redis_key("metrics", "gauges", source)
        _gauge_sets[source] = self

    def current(self) -> GaugeValues:
        """The cached answer, or a fresh one (then cached); without Redis, a fresh one."""
        scrape = _scrape.get() or _Scrape()
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

    def _cached(self, scrape: _Scrape) -> GaugeValues | None:
        if "redis" in scrape.down:
            return None
        try:
            raw = redis_client().get(self.key)
        except redis.exceptions.RedisError as exc:
            if isinstance(exc, _REDIS_DOWN):
                scrape.down.add("redis")
            return None
        return None if raw is None else json.loads(raw)

    def _store(self, values: GaugeValues, scrape: _Scrape) -> None:
        ttl = settings.METRICS_GAUGE_CACHE_SECONDS
        if ttl <= 0 or "redis" in scrape.down:
            return
        try:
            redis_client().set(self.key, json.dumps(values), px=int(ttl * 1000))
        except redis.exceptions.RedisError as exc:
            logger.warning("metrics: gauges %s not cached error=%r", self.source, exc)
            if isinstance(exc, _REDIS_DOWN):
                scrape.down.add("redis")

    def families(self, values: GaugeValues) -> Iterator[Metric]:
        for gauge in self.gauges:
            metric = GaugeMetricFamily(gauge.name, gauge.documentation, labels=gauge.labels)
            for *labels, value in values.get(gauge.name, []):
                metric.add_metric([str(v) for v in labels], value)
            yield metric


def gauge_sets() -> dict[str, GaugeSet]:
    return dict(_gauge_sets)


def families() -> dict[str, Counter | Histogram]:
    return dict(_families)


# --- Reading and rendering -------------------------------------------------------------------

SOURCE_UP = "conveyor_metrics_source_up"


class _RedisCollector(Collector):
    """What the endpoint shows: the summed counters and histograms, every gauge set, and
    whether each source answered."""

    def describe(self) -> list[Metric]:
        return []  # unknown until collected; keeps the registry from collecting on register

    def collect(self) -> Iterator[Metric]:
        scrape = _scrape.get() or _Scrape()
        up = GaugeMetricFamily(SOURCE_UP, "1 if this source answered the scrape, 0 if not "
                               "(its metrics are missing from this scrape).", labels=["source"])
        stored = self._counters(scrape)
        up.add_metric(["counters"], 0 if stored is None else 1)
        for name, values in (stored or {}).items():
            yield _families[name].family(values)
        token = _scrape.set(scrape)
        try:
            for source, gauges in sorted(_gauge_sets.items()):
                try:
                    values = gauges.current()
                except Exception as exc:  # noqa: BLE001 - any failure: this source is down
                    logger.warning("metrics: gauges %s failed error=%r", source, exc)
                    up.add_metric([source], 0)
                    continue
                up.add_metric([source], 1)
                yield from gauges.families(values)
        finally:
            _scrape.reset(token)
        yield up

    @staticmethod
    def _counters(scrape: _Scrape) -> dict[str, dict[bytes, bytes]] | None:
        """Every counter's and histogram's hash (one pipeline); None if Redis did not answer."""
        if "redis" in scrape.down:
            return None
        names = sorted(_families)
        try:
            pipe = redis_client().pipeline(transaction=False)
            for name in names:
                pipe.hgetall(family_key(name))
            return dict(zip(names, pipe.execute(), strict=True))
        except redis.exceptions.RedisError as exc:
            logger.warning("metrics: counters unreadable, Redis did not answer error=%r", exc)
            if isinstance(exc, _REDIS_DOWN):
                scrape.down.add("redis")
            return None


_registry = CollectorRegistry(auto_describe=False)
_registry.register(_RedisCollector())


def render(accept: str = "") -> tuple[bytes, str]:
    """The exposition (Prometheus text, or OpenMetrics if `accept` asks for it) and its
    content type. This process's own counts are flushed first, so they are in it."""
    scrape = _Scrape()
    if isinstance(_flush(), _REDIS_DOWN):
        scrape.down.add("redis")
    encoder, content_type = choose_encoder(accept)
    token = _scrape.set(scrape)
    try:
        return encoder(_registry), content_type
    finally:
        _scrape.reset(token)

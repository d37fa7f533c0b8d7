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
  renders them with prometheus_client's own exposition (domain/common/metrics_endpoint.py).
- Gauges (current counts) are not pushed by anyone: they are computed when scraped, from the
  database and the broker, by the gauge sets the apps declare (domain/common/gauges.py), and
  each set's answer is kept in Redis for METRICS_GAUGE_CACHE_SECONDS, so any number of
  scrapers and API processes costs one computation per set per period.

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
from collections.abc import Callable, Iterable, Sequence

import redis
from django.conf import settings
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from domain.common.redis import redis_client, redis_key

logger = logging.getLogger(__name__)

# Latency of API requests, seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# How long work runs, seconds: a cache invalidation in milliseconds, a bulk slice in a minute.
WORK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)

_families: dict[str, Counter | Histogram] = {}
_names: set[str] = set()  # every metric's, gauges' included (domain/common/gauges.py)
_recording = True


def claim_name(name: str) -> None:
    """A metric's name is declared once, whatever its type."""
    if name in _names:
        raise ValueError(f"metric {name!r} is declared twice")
    _names.add(name)


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
        claim_name(name)
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
        claim_name(name)
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
    return try_flush() is None


def try_flush() -> BaseException | None:
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


def families() -> dict[str, Counter | Histogram]:
    return dict(_families)

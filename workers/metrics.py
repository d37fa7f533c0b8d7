"""The worker runtime's metrics (README "Metrics"): how long each job's work ran, by kind
(observed in workers/base.py around the body); the queues as the broker, the database and the
workers' presence see them, when scraped; and the hooks that flush a worker process's counts
when it stops.

Worker processes publish nothing on a port of their own: they add their counts to Redis
(domain/common/metrics.py) and the API's `GET /metrics` shows the sums of every worker on
every machine. A Celery pool process leaves through `os._exit`, which skips atexit, so it
flushes at `worker_process_shutdown`; the main process (solo and threads pools) at
`worker_shutdown`.
"""

from __future__ import annotations

from collections import Counter as Tally

from celery import signals

from domain.common.errors import TransientError
from domain.common.gauges import Gauge, GaugeSet, GaugeValues
from domain.common.metrics import WORK_BUCKETS, Histogram, flush
from domain.jobs.metrics import JOBS_NOW
from domain.jobs.registry import get_job_kind, is_job_kind
from domain.jobs.selectors import queue_pauses
from workers.health import queue_depths
from workers.presence import workers_seen
from workers.queues import Queues, queue_for_task

JOB_RUN_SECONDS = Histogram(
    "conveyor_job_run_seconds",
    "How long a job's work ran, by kind: one observation per turn of its body (an attempt, "
    "failed ones included, or a turn that ended deferred: a bulk run's time slice); a "
    "micro-batch's jobs each count their own body.",
    ("kind",), buckets=WORK_BUCKETS)


def _depths() -> GaugeValues:
    depths = queue_depths()
    if all(depth is None for depth in depths.values()):
        raise TransientError("the broker did not answer")
    return {"conveyor_queue_depth": [[queue, depth] for queue, depth in depths.items()
                                     if depth is not None]}


def _queue_of(kind: str) -> str | None:
    return queue_for_task(get_job_kind(kind).task_name) if is_job_kind(kind) else None


def _waiting_by_queue() -> GaugeValues:
    """The jobs' gauges (domain/jobs/metrics.py, cached) summed by the queue of each kind."""
    jobs = JOBS_NOW.current()
    waiting: Tally = Tally({queue.value: 0 for queue in Queues})
    oldest = {queue.value: 0.0 for queue in Queues}
    for kind, n in jobs.get("conveyor_jobs_waiting", []):
        queue = _queue_of(kind)
        if queue is not None:
            waiting[queue] += n
    for kind, age in jobs.get("conveyor_jobs_oldest_waiting_age_seconds", []):
        queue = _queue_of(kind)
        if queue is not None:
            oldest[queue] = max(oldest[queue], age)
    paused = set(queue_pauses())
    return {"conveyor_queue_waiting_jobs": [[q, n] for q, n in sorted(waiting.items())],
            "conveyor_queue_oldest_waiting_age_seconds": [[q, a] for q, a in
                                                          sorted(oldest.items())],
            "conveyor_queue_paused": [[q.value, int(q.value in paused)] for q in Queues]}


def _presence() -> GaugeValues:
    """The workers' own heartbeats (workers/presence.py: one HGETALL, no broadcast)."""
    seen = workers_seen()
    consumers: Tally = Tally({queue.value: 0 for queue in Queues})
    for record in seen.values():
        consumers.update(q for q in record["queues"] if q in consumers)
    return {"conveyor_queue_consumers": [[q, n] for q, n in sorted(consumers.items())],
            "conveyor_workers_seen": [[len(seen)]]}


BROKER_NOW = GaugeSet("broker", [
    Gauge("conveyor_queue_depth", "Messages waiting in each queue of the broker (a micro-batch "
          "message carries many jobs; see conveyor_queue_waiting_jobs).", ("queue",)),
], _depths, needs=("broker",))
QUEUES_NOW = GaugeSet("queues", [
    Gauge("conveyor_queue_waiting_jobs", "Jobs due and waiting for a worker, by the queue "
          "their kind goes to.", ("queue",)),
    Gauge("conveyor_queue_oldest_waiting_age_seconds", "How long the oldest due job of a "
          "queue has waited for a worker (0: none waiting).", ("queue",)),
    Gauge("conveyor_queue_paused", "1 while the queue is paused (its jobs stay queued).",
          ("queue",)),
], _waiting_by_queue, needs=("database",))
WORKERS_NOW = GaugeSet("workers", [
    Gauge("conveyor_queue_consumers", "Workers seen consuming the queue within "
          "WORKER_SEEN_SECONDS (their heartbeats; a paused queue has none).", ("queue",)),
    Gauge("conveyor_workers_seen", "Workers seen alive within WORKER_SEEN_SECONDS."),
], _presence, needs=("redis",))


@signals.worker_process_shutdown.connect
def _flush_pool_process(**kwargs) -> None:
    flush()


@signals.worker_shutdown.connect
def _flush_worker(**kwargs) -> None:
    flush()

"""Why isn't this job running? One reason code, one sentence, and the facts behind them.

The answer takes facts from every layer, which is why it lives here, above them all: the job
row (domain/jobs), the broker (the queue's depth), the workers' presence in Redis (who consumes
the queue, when a worker was last seen), paused queues, webhook endpoints (disabled, circuit,
rate limit: domain/notifications) and bulk runs (domain/bulk). `GET /api/v1/jobs/{id}/explain`
(workers/apis.py) and the admin's job page (through domain/jobs/explainer.py) show it.

The checks run in this order and the first that holds is the answer (README "Why isn't this
job running?"):

1. `running` / `orphaned`: a running job; `orphaned` when its lease lapsed (its worker stopped
   renewing it: killed, frozen, its machine gone), with when the worker was last seen (its
   last heartbeat or lease renewal, whichever is later).
2. `bulk_paused`: the bulk run it carries is paused (the job was cancelled, or finished its
   slice, for the pause).
3. `endpoint_disabled`: the webhook delivery it carries is parked because its endpoint is
   disabled. Before the terminal statuses: the disabling cancelled the job, and "cancelled"
   alone would hide why and what to do.
4. `succeeded`, `dead`, `cancelled`: it has finished.
5. `queue_paused`: its queue is paused. Before any wait of its own: a pause holds it whatever
   its time (the relay holds its unsent jobs too), and only an operator ends it.
6. `circuit_open`, `rate_limited`: the webhook delivery waits for its endpoint (no attempt
   used).
7. `backoff`: a failed attempt's retry is not due yet.
8. `scheduled`: `run_at` is ahead.
9. `not_sent`: due, but not on the broker (it was unreachable, or the job was handed back);
   the outbox relay sends it.
10. `no_consumer`: on the broker, but no live worker consumes its queue (none in the workers'
    presence; when the presence cannot be read, this is not claimed).
11. `waiting_in_queue`: on the broker, and jobs sent before it are still ahead of it.

The broker is asked only for the depth (5, 9-11), once; when it does not answer, the depth is
null and the rest still comes from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone

from domain.bulk.kinds import BULK_RUN
from domain.bulk.models import BulkRun, BulkRunStatus
from domain.bulk.selectors import bulk_run_of_job
from domain.common.errors import ValidationFailed
from domain.common.rendering import iso, span
from domain.jobs.explainer import Explanation, JobExplainer
from domain.jobs.models import RUNNABLE_JOB_STATUSES, Job, JobStatus, QueuePause
from domain.jobs.outbox import outbox_relay_due_at
from domain.jobs.registry import get_job_kind
from domain.jobs.routing import kinds_by_queue, queue_of_task
from domain.jobs.selectors import jobs_sent_before, jobs_waiting_by_kind, queue_pauses
from domain.notifications.kinds import WEBHOOK_DELIVERY
from domain.notifications.models import (
    Delivery,
    DeliveryStatus,
    EndpointState,
    WebhookEndpoint,
)
from domain.notifications.selectors import webhook_delivery_of_job
from workers.health import queue_depths
from workers.presence import FORGET_AFTER_SECONDS, consumers_by_queue, workers_seen

logger = logging.getLogger(__name__)

# The jobs ahead of one in its queue are counted up to this many (a bounded scan).
AHEAD_LIMIT = 10_000


class Reason(StrEnum):
    """The reason codes, in the order they are checked."""

    RUNNING = "running"
    ORPHANED = "orphaned"
    BULK_PAUSED = "bulk_paused"
    ENDPOINT_DISABLED = "endpoint_disabled"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"
    QUEUE_PAUSED = "queue_paused"
    CIRCUIT_OPEN = "circuit_open"
    RATE_LIMITED = "rate_limited"
    BACKOFF = "backoff"
    SCHEDULED = "scheduled"
    NOT_SENT = "not_sent"
    NO_CONSUMER = "no_consumer"
    WAITING_IN_QUEUE = "waiting_in_queue"


Found = tuple[Reason, str, dict[str, Any]]


def job_explain(*, job: Job, now: datetime | None = None, operator: bool = True) -> Explanation:
    """Why `job` is (or is not) running now. Reads only; asks the broker at most once.

    `operator`: whether the reader may see who paused a queue and why, and the host names of
    the workers consuming it (an `admin` key, the admin's page); any other reader gets the
    same reason with the count of consumers only."""
    facts = _Facts(job, now or timezone.now(), operator)
    for check in _CHECKS:
        found = check(facts)
        if found is not None:
            reason, message, details = found
            return Explanation(reason=reason.value, message=message,
                               details={"queue": facts.queue, **details},
                               checked_at=facts.now)
    # Every status is covered above; a status added to Job without a check lands here.
    raise AssertionError(f"no explanation for a {job.status} job")


class WorkersExplainer(JobExplainer):
    """What the workers app installs for the admin (domain/jobs/explainer.py)."""

    def explain(self, job: Job) -> Explanation:
        return job_explain(job=job)


# --- The facts, each read once and only when a check asks ------------------------------------

class _Facts:
    def __init__(self, job: Job, now: datetime, operator: bool = True) -> None:
        self.job = job
        self.now = now
        self.operator = operator

    @cached_property
    def queue(self) -> str | None:
        """The queue its kind's task is routed to, as a send takes it (domain/jobs/routing.py)."""
        try:
            kind = get_job_kind(self.job.kind)
        except ValidationFailed:  # a kind no longer registered: no task, no queue
            return None
        return queue_of_task(kind.task_name)

    @cached_property
    def queue_kinds(self) -> set[str]:
        if self.queue is None:
            return {self.job.kind}
        return kinds_by_queue().get(self.queue, set())

    @cached_property
    def pause(self) -> QueuePause | None:
        return queue_pauses().get(self.queue) if self.queue else None

    @cached_property
    def depth(self) -> int | None:
        """Messages in the queue now; None when the broker does not answer."""
        return None if self.queue is None else queue_depths().get(self.queue)

    @cached_property
    def consumers(self) -> list[str] | None:
        """The workers seen consuming the queue (workers/presence.py); None when their
        presence (Redis) does not answer."""
        if self.queue is None:
            return None  # no queue known: nobody can say who would consume it
        try:
            return consumers_by_queue().get(self.queue, [])
        except redis.exceptions.RedisError as exc:
            logger.warning("explain: worker presence unreadable error=%r", exc)
            return None

    def last_heartbeat(self, worker: str) -> datetime | None:
        """When `worker` last wrote its presence (kept an hour after it stopped); None when
        unknown or unreadable."""
        if not worker:
            return None
        try:
            record = workers_seen(max_age=FORGET_AFTER_SECONDS).get(worker)
        except redis.exceptions.RedisError as exc:
            logger.warning("explain: worker presence unreadable error=%r", exc)
            return None
        return datetime.fromisoformat(record["seen_at"]) if record else None

    @cached_property
    def delivery(self) -> Delivery | None:
        if self.job.kind != WEBHOOK_DELIVERY.name:
            return None
        return webhook_delivery_of_job(job_id=self.job.pk)

    @cached_property
    def bulk_run(self) -> BulkRun | None:
        if self.job.kind != BULK_RUN.name:
            return None
        return bulk_run_of_job(job_id=self.job.pk)

    @property
    def runnable(self) -> bool:
        return self.job.status in RUNNABLE_JOB_STATUSES


# --- The checks, in order ----------------------------------------------------------------------

def _running(f: _Facts) -> Found | None:
    job = f.job
    if job.status != JobStatus.RUNNING:
        return None
    worker = job.worker or "an unnamed worker"
    details = {"worker": job.worker or None, "since": iso(job.started_at),
               "lease_expires_at": iso(job.lease_expires_at), "attempt": job.attempts,
               "max_attempts": job.max_attempts}
    # Seen: its last heartbeat (workers/presence.py), or the last renewal of this job's lease
    # (every third of JOB_LEASE_SECONDS while the process lives), whichever is later.
    renewed = (job.lease_expires_at - timedelta(seconds=settings.JOB_LEASE_SECONDS)
               if job.lease_expires_at else None)
    seen = [at for at in (renewed, f.last_heartbeat(job.worker)) if at is not None]
    last_seen = max(seen) if seen else None
    if job.lease_expires_at is not None and job.lease_expires_at < f.now:
        rescue_at = job.lease_expires_at + timedelta(seconds=settings.ORPHAN_GRACE_SECONDS)
        then = ("runs it again" if job.attempts < job.max_attempts
                else "makes it dead (it has no attempt left)")
        return (Reason.ORPHANED,
                f"It was left running on {worker}, which has not been seen since "
                f"{_when(last_seen, f.now)} (its lease lapsed at "
                f"{_when(job.lease_expires_at, f.now)}); the orphan rescue {then} at about "
                f"{_when(max(rescue_at, f.now), f.now)}.",
                {**details, "last_seen_at": iso(last_seen), "rescue_at": iso(rescue_at)})
    return (Reason.RUNNING,
            f"It is running on {worker} since {_when(job.started_at, f.now)} (attempt "
            f"{job.attempts} of {job.max_attempts}); the worker holds its lease until "
            f"{_when(job.lease_expires_at, f.now)} and renews it while it runs.",
            {**details, "last_seen_at": iso(last_seen)})


def _bulk_paused(f: _Facts) -> Found | None:
    run = f.bulk_run
    if run is None or run.status != BulkRunStatus.PAUSED:
        return None
    done = f"{run.rows_done} of {run.rows_matched}" if run.rows_matched is not None \
        else f"{run.rows_done}"
    return (Reason.BULK_PAUSED,
            f"Its bulk run {run.pk} ({run.operation}) was paused at {_when(run.updated_at, f.now)} "
            f"after {done} rows; resume it (POST /api/v1/bulk-operations/{run.pk}/resume) to "
            "carry on from its checkpoint.",
            {"bulk_run": str(run.pk), "operation": run.operation, "paused_at":
             iso(run.updated_at), "rows_done": run.rows_done, "rows_matched": run.rows_matched,
             "checkpoint": run.checkpoint})


def _endpoint_disabled(f: _Facts) -> Found | None:
    delivery = f.delivery
    if delivery is None or delivery.endpoint is None \
            or delivery.endpoint.state != EndpointState.DISABLED \
            or delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED,
                                   DeliveryStatus.SKIPPED) \
            or f.job.status == JobStatus.DEAD:
        return None
    endpoint = delivery.endpoint
    why = f" ({endpoint.disabled_reason})" if endpoint.disabled_reason else ""
    return (Reason.ENDPOINT_DISABLED,
            f"Its webhook endpoint {endpoint.url} is disabled{why}; the delivery is parked and "
            f"is sent again, with a new job, when the endpoint is enabled "
            f"(PATCH /api/v1/webhook-endpoints/{endpoint.pk} with \"enabled\": true).",
            {**_delivery_facts(delivery), "disabled_reason": endpoint.disabled_reason or None})


def _finished(f: _Facts) -> Found | None:
    job = f.job
    attempt = f"attempt {job.attempts} of {job.max_attempts}"
    details = {"finished_at": iso(job.finished_at), "attempt": job.attempts,
               "max_attempts": job.max_attempts}
    if job.status == JobStatus.SUCCEEDED:
        on = f" on {job.worker}" if job.worker else ""
        return (Reason.SUCCEEDED,
                f"It ran and succeeded at {_when(job.finished_at, f.now)}{on} ({attempt}).",
                {**details, "worker": job.worker or None})
    if job.status == JobStatus.DEAD:
        return (Reason.DEAD,
                f"It is dead: {attempt} failed at {_when(job.finished_at, f.now)} with "
                f"{_error(job.error)}; fix the cause, then replay it "
                f"(POST /api/v1/jobs/{job.pk}/retry).",
                {**details, "error": job.error})
    if job.status == JobStatus.CANCELLED:
        return (Reason.CANCELLED,
                f"It was cancelled at {_when(job.finished_at, f.now)} and will not run; replay it "
                f"(POST /api/v1/jobs/{job.pk}/retry) to run it after all.",
                {**details, "error": job.error})
    return None


def _queue_paused(f: _Facts) -> Found | None:
    pause = f.pause
    if not f.runnable or pause is None:
        return None
    by = f" by {pause.paused_by}" if pause.paused_by and f.operator else ""
    why = f", reason: {pause.reason}" if pause.reason and f.operator else ""
    return (Reason.QUEUE_PAUSED,
            f"Its queue {f.queue!r} is paused since {_when(pause.paused_at, f.now)}{by}{why}; "
            "it stays queued, using no attempt, until the queue is resumed "
            f"(POST /api/v1/queues/{f.queue}/resume, the admin, or "
            f"manage.py queues resume {f.queue}).",
            {"paused_at": iso(pause.paused_at),
             **({"paused_by": pause.paused_by or None, "pause_reason": pause.reason or None}
                if f.operator else {}),
             "depth": f.depth})


def _endpoint_waits(f: _Facts) -> Found | None:
    """The delivery waits for its endpoint: an open circuit, or its rate limit."""
    delivery = f.delivery
    if not f.runnable or delivery is None or delivery.endpoint is None:
        return None
    endpoint = delivery.endpoint
    if _circuit_open(endpoint, f.now):
        until = endpoint.circuit_open_until
        probing = until <= f.now
        state = ("half-open: another delivery is the one probe" if probing
                 else f"open until {_when(until, f.now)}")
        return (Reason.CIRCUIT_OPEN,
                f"The circuit of its webhook endpoint {endpoint.url} is {state}, after "
                f"{endpoint.consecutive_failures} failures in a row; the delivery waits without "
                f"using an attempt and is tried at {_when(_retry_time(f) or until, f.now)}.",
                {**_delivery_facts(delivery), "circuit_open_until": iso(until),
                 "consecutive_failures": endpoint.consecutive_failures,
                 "retry_at": iso(_retry_time(f))})
    if (delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at is not None
            and f.job.run_at is not None and f.job.run_at > f.now):
        limit = endpoint.rate_limit
        rate = f"{limit} message{'s' if limit != 1 else ''} a second" if limit else "a rate limit"
        return (Reason.RATE_LIMITED,
                f"Its webhook endpoint {endpoint.url} takes {rate}, and its sends of this "
                f"second are taken; the delivery is sent at {_when(f.job.run_at, f.now)}, without "
                "using an attempt.",
                {**_delivery_facts(delivery), "rate_limit": limit,
                 "retry_at": iso(f.job.run_at)})
    return None


def _backoff(f: _Facts) -> Found | None:
    job = f.job
    if job.status != JobStatus.RETRYING or job.next_retry_at is None \
            or job.next_retry_at <= f.now:
        return None
    return (Reason.BACKOFF,
            f"Attempt {job.attempts} of {job.max_attempts} failed with {_error(job.error)}; "
            f"the next attempt is at {_when(job.next_retry_at, f.now)}.",
            {"next_retry_at": iso(job.next_retry_at), "error": job.error,
             "attempt": job.attempts, "max_attempts": job.max_attempts})


def _scheduled(f: _Facts) -> Found | None:
    job = f.job
    if not f.runnable or job.run_at is None or job.run_at <= f.now:
        return None
    return (Reason.SCHEDULED, f"It is scheduled to run at {_when(job.run_at, f.now)}.",
            {"run_at": iso(job.run_at)})


def _not_sent(f: _Facts) -> Found | None:
    job = f.job
    if not f.runnable or job.enqueued_at is not None:
        return None
    due = outbox_relay_due_at(job)
    when = (f"at its first run after {_when(due, f.now)}" if due > f.now
            else f"at its next run, as it has been due for it since {_when(due, f.now)}")
    depth = f.depth
    if job.status == JobStatus.RETRYING:
        what = (f"Attempt {job.attempts} failed and its retry was not handed to the broker "
                "(a wait too long for the broker is kept in the database, or the broker was "
                "unreachable)")
    elif job.created_at > f.now - timedelta(seconds=settings.OUTBOX_RELAY_GRACE_SECONDS) \
            and depth is not None:
        what = ("It was committed moments ago and is being handed to the broker; should "
                "that fail")
    elif job.attempts == 0 and not job.error:
        what = "It is committed but was never handed to the broker (it was unreachable)"
    else:
        what = ("It was handed back to be sent again (its worker was lost, or its time limit "
                "struck before it started) and is not on the broker yet")
    now_down = "; the broker does not answer now either" if depth is None else ""
    return (Reason.NOT_SENT,
            f"{what}; the outbox relay sends it {when}{now_down}.",
            {"relay_at": iso(max(due, f.now)), "created_at": iso(job.created_at),
             "depth": depth, "broker_reachable": depth is not None})


def _in_queue(f: _Facts) -> Found | None:
    """On the broker and due: no live worker consumes its queue, or jobs are ahead of it."""
    job = f.job
    if not f.runnable:
        return None
    depth, consumers = f.depth, f.consumers
    waiting = jobs_waiting_by_kind(now=f.now, kinds=f.queue_kinds)
    oldest = max((facts["oldest_age_seconds"] for facts in waiting.values()), default=None)
    details = {**({"consumers": consumers} if f.operator else {}),
               "consumer_count": None if consumers is None else len(consumers),
               "depth": depth, "oldest_age_seconds": oldest,
               "enqueued_at": iso(job.enqueued_at),
               "waiting_seconds": _seconds(f.now - job.enqueued_at)}
    in_queue = ("the broker does not answer, so its depth is unknown" if depth is None
                else f"{depth} message{'s' if depth != 1 else ''} in it")
    if consumers == []:
        return (Reason.NO_CONSUMER,
                f"No live worker consumes its queue {f.queue!r} (none seen in the last "
                f"{settings.WORKER_SEEN_SECONDS:g} s), so it waits on the broker ({in_queue}); "
                "start a worker with that queue (a profile that includes it, or "
                f"celery -A config worker -Q {f.queue}).",
                details)
    ahead = jobs_sent_before(job=job, kinds=f.queue_kinds, now=f.now, limit=AHEAD_LIMIT)
    more = "" if ahead < AHEAD_LIMIT else " or more"
    where = (f"in queue {f.queue!r} ({in_queue})" if f.queue is not None else
             f"for a worker that knows its kind {job.kind!r} (not registered in this process, "
             "so its queue is unknown)")
    line = ("first, with no job sent before it still waiting" if ahead == 0 else
            f"behind {ahead}{more} job{'s' if ahead != 1 else ''} sent before it")
    oldest_of = "of the queue" if f.queue is not None else "of its kind"
    return (Reason.WAITING_IN_QUEUE,
            f"It waits {where}, {line}; it was sent at {_when(job.enqueued_at, f.now)}"
            + (f" and the oldest due job {oldest_of} has waited {span(oldest)}."
               if oldest and ahead else "."),
            {**details, "ahead": ahead, "ahead_exact": ahead < AHEAD_LIMIT,
             "position": ahead + 1 if ahead < AHEAD_LIMIT else None})


_CHECKS: tuple[Callable[[_Facts], Found | None], ...] = (
    _running, _bulk_paused, _endpoint_disabled, _finished, _queue_paused, _endpoint_waits,
    _backoff, _scheduled, _not_sent, _in_queue)


# --- Small helpers -----------------------------------------------------------------------------

def _circuit_open(endpoint: WebhookEndpoint, now: datetime) -> bool:
    if endpoint.circuit_open_until is None:
        return False
    if endpoint.circuit_open_until > now:
        return True
    # Half-open: one probe is out (domain/notifications/health.circuit_wait).
    return endpoint.circuit_probe_at is not None and endpoint.circuit_probe_at >= \
        endpoint.circuit_open_until


def _retry_time(f: _Facts) -> datetime | None:
    """When a deferred delivery job is due again (its `run_at`), if it was deferred."""
    return f.job.run_at if f.job.run_at is not None and f.job.run_at > f.now else None


def _delivery_facts(delivery: Delivery) -> dict[str, Any]:
    endpoint = delivery.endpoint
    return {"delivery": str(delivery.pk), "delivery_status": delivery.status,
            "endpoint": str(endpoint.pk), "endpoint_url": endpoint.url,
            "endpoint_state": endpoint.state,
            "next_attempt_at": iso(delivery.next_attempt_at)}


def _error(error: Any) -> str:
    if not error:
        return "no error recorded"
    if not isinstance(error, dict):  # written by hand, or by an older release: say it as it is
        return str(error)[:500]
    return f"{error.get('type', 'an error')}: {error.get('message', '')}".rstrip(": ")


def _seconds(delta: timedelta) -> float:
    return round(max(delta.total_seconds(), 0.0), 3)



def _when(when: datetime | None, now: datetime) -> str:
    """"2026-11-28 23:10:05 UTC (in 12 s)": the instant and how far it is from now."""
    if when is None:
        return "an unknown time"
    delta = (when - now).total_seconds()
    relative = "now" if abs(delta) < 1 else (f"in {span(delta)}" if delta > 0
                                              else f"{span(-delta)} ago")
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({relative})"

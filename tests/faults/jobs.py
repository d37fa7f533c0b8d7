"""Test-only job kinds for the fault-injection suite, imported by the test process AND by
every worker subprocess (`celery worker -I tests.faults.jobs`).

Every effect is IDEMPOTENT on the job id and countable, in the Redis of `settings.REDIS_URL`
(in a worker subprocess that is the suite's own spare Redis, db 0):

- `faults:effects:<run>`        a SET: the effect; SADD of the job id, so it holds each id once
- `faults:added:<job id>`       INCR only when that SADD returned 1 (must never exceed 1)
- `faults:runs:<job id>`        INCR at every execution of the body (claimed runs)
- `faults:deliveries:<job id>`  INCR at every delivery of the task (task_prerun), including
                                duplicates the claim refuses (no body run)
- `faults:retries:<job id>`     a LIST of JSON records, one per `retry` attempt, written in the
                                transaction that records the attempt: the row's next_retry_at
- `faults:fixed`                the "cause is fixed" flag for `until_fixed` jobs

Job params: `sleep` (seconds, before the effect: a window to kill the worker in),
`sleep_once` (sleep in the first attempt only: a run after a rescue does not wait again),
`fail_times` (raise TransientError while attempts <= n), `until_fixed` (raise TransientError
until the `faults:fixed` flag is set).
"""

from __future__ import annotations

import json
import os
import time

import redis
from celery.signals import task_prerun
from django.conf import settings
from django.db.models.signals import post_save

from domain.common.errors import TransientError
from domain.jobs.models import AttemptOutcome, Job, JobAttempt
from domain.jobs.registry import JobKind, register_job_kind
from domain.jobs.retry import RetryPolicy
from workers.base import job_task

EFFECT_KIND = "faults_effect"
EFFECT_TASK = "conveyor.demo.faults_effect"  # conveyor.demo.* routes to the `events` queue
BACKOFF_KIND = "faults_backoff"
BACKOFF_TASK = "conveyor.demo.faults_backoff"
TASK_NAMES = frozenset({EFFECT_TASK, BACKOFF_TASK})

# Enough attempts to survive a couple of worker kills (each rescue counts a `lost` attempt).
EFFECT_POLICY = RetryPolicy("faults_effect", max_attempts=5, backoff_factor=1, backoff_max=1)
# Small, growing backoff: the n-th retry waits up to min(4, 1 * 2**(n-1)) = 1, 2, 4 seconds.
BACKOFF_POLICY = RetryPolicy("faults_backoff", max_attempts=4, backoff_factor=1, backoff_max=4)

_PARAMS = {
    "type": "object",
    "properties": {
        "sleep": {"type": "number", "minimum": 0, "maximum": 30},
        "sleep_once": {"type": "boolean"},
        "fail_times": {"type": "integer", "minimum": 0},
        "until_fixed": {"type": "boolean"},
    },
    "additionalProperties": False,
}
EFFECT = register_job_kind(JobKind(
    name=EFFECT_KIND, task_name=EFFECT_TASK,
    description="fault tests: an idempotent, countable effect",
    params_schema=_PARAMS, retry=EFFECT_POLICY))
BACKOFF = register_job_kind(JobKind(
    name=BACKOFF_KIND, task_name=BACKOFF_TASK,
    description="fault tests: the same effect, a small growing backoff",
    params_schema=_PARAMS, retry=BACKOFF_POLICY))


# --- Redis keys -----------------------------------------------------------------------

def effects_key() -> str:
    return f"faults:effects:{settings.TEST_RUN_ID}"


def added_key(job_id) -> str:
    return f"faults:added:{job_id}"


def runs_key(job_id) -> str:
    return f"faults:runs:{job_id}"


def deliveries_key(job_id) -> str:
    return f"faults:deliveries:{job_id}"


def retries_key(job_id) -> str:
    return f"faults:retries:{job_id}"


FIXED_KEY = "faults:fixed"

_clients: dict[tuple[int, str], redis.Redis] = {}


def effects_redis(url: str | None = None) -> redis.Redis:
    """A client for the effects Redis (one per process: prefork children get their own)."""
    url = url or settings.REDIS_URL
    key = (os.getpid(), url)
    if key not in _clients:
        _clients[key] = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    return _clients[key]


# --- The job body ---------------------------------------------------------------------

def _body(job: Job) -> dict:
    params = job.params or {}
    r = effects_redis()
    runs = r.incr(runs_key(job.pk))
    if params.get("sleep") and (job.attempts <= 1 or not params.get("sleep_once")):
        time.sleep(float(params["sleep"]))
    if job.attempts <= int(params.get("fail_times", 0)):
        raise TransientError(f"failing on purpose (attempt {job.attempts})")
    if params.get("until_fixed") and not r.exists(FIXED_KEY):
        raise TransientError("the cause is not fixed yet")
    added = r.sadd(effects_key(), str(job.pk))
    if added:
        r.incr(added_key(job.pk))
    return {"added": bool(added), "runs": runs}


@job_task(kind=EFFECT)
def faults_effect(job: Job) -> dict:
    """Fault tests: sleep / fail as the params say, then add the job id to the effect set."""
    return _body(job)


@job_task(kind=BACKOFF)
def faults_backoff(job: Job) -> dict:
    """Fault tests: like faults_effect, with BACKOFF_POLICY."""
    return _body(job)


# --- Recorders (run in the worker processes) ------------------------------------------

@task_prerun.connect(weak=False)
def _count_delivery(sender=None, task_id=None, **kwargs) -> None:
    if getattr(sender, "name", None) in TASK_NAMES and task_id:
        effects_redis().incr(deliveries_key(task_id))


def _record_retry(sender, instance: JobAttempt, created: bool, **kwargs) -> None:
    """Keep the next_retry_at each `retry` attempt set; the claim of the next attempt clears
    the row's value, so it is read here, inside the transaction that wrote it."""
    if not created or instance.outcome != AttemptOutcome.RETRY:
        return
    job = instance.job  # the in-memory job the worker passed in; no query
    if job.kind not in (EFFECT_KIND, BACKOFF_KIND):
        return
    next_retry_at = Job.objects.filter(pk=instance.job_id).values_list(
        "next_retry_at", flat=True).first()
    effects_redis().rpush(retries_key(instance.job_id), json.dumps({
        "run": getattr(instance, "run", 0),
        "number": instance.number,
        "finished_at": instance.finished_at.isoformat(),
        "next_retry_at": next_retry_at.isoformat() if next_retry_at else None,
    }))


post_save.connect(_record_retry, sender=JobAttempt, weak=False,
                  dispatch_uid="faults-record-retry")

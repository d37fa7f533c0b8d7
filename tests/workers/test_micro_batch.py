"""Micro-batching: one broker message carries many jobs of a kind (domain/jobs/outbox.py), and
the worker claims, runs and records them set-wise while each job keeps the single-job contract
(workers/base.py: JobTask.run_jobs).

Every test publishes to a Redis database no worker consumes (the `broker` fixture below): the
session's worker thread, once a worker test has started it, would take the very messages these
tests read. For the same reason no test here starts that worker (it would then consume the
messages of later modules' tests): a message is delivered in this process with
`task.apply(...)`, the task's real code path, against the real database and Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from config.embedded import redis_url_with_db
from domain.common.errors import PermanentError, TransientError
from domain.events.models import Event, EventStatus
from domain.jobs.lifecycle import jobs_claim, jobs_succeed
from domain.jobs.models import Job, JobAttempt, JobStatus
from domain.jobs.outbox import outbox_relay, outbox_send
from domain.jobs.registry import JobKind, get_job_kind, register_job_kind
from domain.jobs.retry import RetryPolicy
from tasks.cache import invalidate
from tasks.demo import noop
from tests.broker_utils import broker_at
from tests.conftest import broker_key, queued_job_ids, queued_tasks
from tests.factories import EventFactory
from workers.base import job_task

# A test-only kind that batches, with a body failing on demand per job (`params.fail`).
# Its task name routes to the `events` queue, like every conveyor.demo.* task.
BATCH_POLICY = RetryPolicy("test_batch", max_attempts=3, backoff_factor=1, backoff_max=60)
BATCH_KIND = register_job_kind(JobKind(
    name="test_batch", task_name="conveyor.demo.test_batch",
    description="micro-batch tests: fails on demand, per job", params_schema={"type": "object"},
    retry=BATCH_POLICY, batch_size=10))
RETRY_AFTER = 30  # seconds the transient failure asks for: a broker countdown, never zero


@job_task(kind=BATCH_KIND)
def batch_body(job: Job) -> dict:
    fail = job.params.get("fail")
    if fail == "transient":
        raise TransientError("the other side is down", retry_after=RETRY_AFTER)
    if fail == "permanent":
        raise PermanentError("the input can never work")
    if fail == "soft_time_limit":
        raise SoftTimeLimitExceeded("the batch ran out of time")
    if fail == "unstorable":
        return {"at": timezone.now()}  # a datetime: not JSON, the row cannot store it
    return {"job": str(job.pk)}


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The broker this test publishes to and reads: this server's Redis db 13, which no worker
    consumes, with this run's key prefix cleared before and after."""
    url = redis_url_with_db(settings.CELERY_BROKER_URL, 13)
    client = redis.Redis.from_url(url)

    def clear() -> None:
        keys = list(client.scan_iter(f"{settings.TEST_KEY_PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)

    clear()
    with broker_at(url):
        yield client
    clear()


# --- helpers --------------------------------------------------------------------------

def _jobs(n: int, kind: str = "noop", params: list[dict] | None = None, **fields) -> list[Job]:
    """n jobs of a kind, in creation order (params: one dict per job)."""
    params = params or [{} for _ in range(n)]
    max_attempts = get_job_kind(kind).retry.max_attempts
    return Job.objects.bulk_create(
        [Job(kind=kind, params=p, max_attempts=max_attempts, **fields) for p in params])


def _ids(jobs: list[Job]) -> list[str]:
    return [str(job.pk) for job in jobs]


def _shape(messages: list[dict]) -> list[int | str]:
    """Each message's job count; "single" for the single form (task id = its one job id)."""
    return ["single" if m["arg"] == m["id"] else len(m["arg"]) for m in messages]


def _run_batch(task, job_ids: list[str] | str) -> dict:
    """Deliver one message to the task, in this process; its return value."""
    result = task.apply(args=[job_ids])
    assert result.successful(), result.traceback
    return result.result


def _deliver(broker: redis.Redis, queue: str) -> list[dict]:
    """Take every message waiting in a queue and run it in this process, as a worker would
    (a worker thread here would share the session: see the module docstring); their return
    values."""
    messages = queued_tasks(broker, queue)
    broker.delete(broker_key(queue))
    tasks = {task.name: task for task in (noop, invalidate, batch_body)}
    return [_run_batch(tasks[m["task"]], m["arg"]) for m in messages]


def _counts(**given: int) -> dict:
    counts = {"jobs": 0, "claimed": 0, "succeeded": 0, "retrying": 0, "parked": 0, "dead": 0,
              "released": 0}
    counts.update(given)
    return counts


def _outcomes(job: Job) -> list[str]:
    return list(JobAttempt.objects.filter(job_id=job.pk).order_by("number")
                .values_list("outcome", flat=True))


def _row(job: Job) -> dict:
    """Everything the worker could change on a job's row."""
    return Job.objects.filter(pk=job.pk).values(
        "status", "attempts", "result", "error", "started_at", "finished_at", "enqueued_at",
        "next_retry_at", "worker").get()


def _attach(event: Event, *jobs: Job) -> None:
    """Make the jobs an event's, one handler each."""
    for n, job in enumerate(jobs):
        Job.objects.filter(pk=job.pk).update(event=event, handler=f"h{n}")


def _event_status(event: Event) -> str:
    event.refresh_from_db()
    return event.status


def _fresh(jobs: list[Job]) -> list[Job]:
    rows = Job.objects.in_bulk([job.pk for job in jobs])
    return [rows[job.pk] for job in jobs]


# --- the outbox: which messages go out --------------------------------------------------

@pytest.mark.django_db
def test_outbox_splits_a_kind_into_messages_of_its_batch_size(broker):
    # given 1,203 noop jobs (noop batches 500 to a message)
    jobs = _jobs(1203)

    # when the outbox sends them
    sent = outbox_send(jobs)

    # then three messages carry 500, 500 and 203 job ids, each a list, in the jobs' order
    assert len(sent) == 1203
    messages = queued_tasks(broker, "events")
    assert _shape(messages) == [500, 500, 203]
    assert all(m["task"] == "conveyor.demo.noop" for m in messages)
    # and every job id travels exactly once, in order
    carried = queued_job_ids(broker, "events")
    assert carried == _ids(jobs)
    assert len(set(carried)) == 1203
    # and every job is stamped as handed over
    assert not Job.objects.filter(pk__in=[j.pk for j in jobs], enqueued_at__isnull=True).exists()


@pytest.mark.django_db
def test_outbox_sends_a_lone_job_in_the_single_form(broker):
    # given one noop job, of a kind that batches
    [job] = _jobs(1)

    # when the outbox sends it
    outbox_send([job])

    # then one message carries its id as a plain string, under its own id as the task id
    assert queued_tasks(broker, "events") == [
        {"task": "conveyor.demo.noop", "id": str(job.pk), "arg": str(job.pk), "eta": None}]


@pytest.mark.parametrize(("kind", "n", "max_batch", "shape"), [
    ("noop", 4, 1, ["single"] * 4),  # micro-batching off: one message per job
    ("noop", 5, 2, [2, 2, "single"]),  # a cap below the kind's size; a group of one is single
    ("test_batch", 12, 100, [10, 2]),  # a cap never raises the kind's own size
])
@pytest.mark.django_db
def test_outbox_max_batch_caps_the_jobs_per_message(broker, kind, n, max_batch, shape):
    # given jobs of a kind that batches
    jobs = _jobs(n, kind=kind)

    # when the outbox sends them with a cap on the jobs per message
    outbox_send(jobs, max_batch=max_batch)

    # then the messages have the capped sizes, and carry every job once, in order
    messages = queued_tasks(broker, "events")
    assert _shape(messages) == shape
    assert queued_job_ids(broker, "events") == _ids(jobs)


@pytest.mark.django_db
def test_outbox_batches_each_kind_apart_and_in_its_own_queue(broker):
    # given noop, cache_invalidation and test_batch jobs, interleaved
    noops, caches, tests = [], [], []
    for n in range(3):
        noops += _jobs(1)
        caches += _jobs(1, kind="cache_invalidation", params=[{"keys": [f"k{n}"]}])
        tests += _jobs(1, kind="test_batch")

    # when the outbox sends them together
    outbox_send(noops + caches + tests)

    # then the cache queue holds one batch of the invalidations
    assert [(m["task"], m["arg"]) for m in queued_tasks(broker, "cache")] == [
        ("conveyor.cache.invalidate", _ids(caches))]
    # and the events queue one batch per task: two kinds never share a message
    assert [(m["task"], m["arg"]) for m in queued_tasks(broker, "events")] == [
        ("conveyor.demo.noop", _ids(noops)), ("conveyor.demo.test_batch", _ids(tests))]


# --- the worker: running a batch --------------------------------------------------------

@pytest.mark.django_db
def test_a_batch_run_records_each_job_and_completes_its_events(broker):
    # given two events, each with a noop and a cache invalidation job, sent by the outbox
    # (one batch message per kind), and the cache keys those jobs drop
    cache.set_many({"batch:a": 1, "batch:b": 2, "batch:c": 3})
    events = [EventFactory(), EventFactory()]
    noops = [Job.objects.create(event=e, handler="noop", kind="noop", max_attempts=5)
             for e in events]
    caches = [Job.objects.create(event=e, handler="cache", kind="cache_invalidation",
                                 max_attempts=5, params={"keys": keys})
              for e, keys in zip(events, [["batch:a"], ["batch:b", "batch:c"]], strict=True)]
    outbox_send(noops + caches)

    # when the noop batch is delivered
    assert _deliver(broker, "events") == [_counts(jobs=2, claimed=2, succeeded=2)]

    # then the events still wait for their cache jobs
    assert [_event_status(e) for e in events] == [EventStatus.DISPATCHED] * 2

    # when the cache batch is delivered
    assert _deliver(broker, "cache") == [_counts(jobs=2, claimed=2, succeeded=2)]

    # then every job succeeded on its first attempt, with exactly one attempt recorded
    done = _fresh(noops + caches)
    for job in done:
        assert (job.status, job.attempts, _outcomes(job)) == (
            JobStatus.SUCCEEDED, 1, ["succeeded"]), job
    # and each kind's jobs were claimed together, by one statement
    assert len({j.started_at for j in done[:2]}) == len({j.started_at for j in done[2:]}) == 1
    # and each job keeps its own result
    assert [j.result for j in done] == [
        {"ok": True}, {"ok": True},
        {"keys_deleted": ["batch:a"], "namespaces_bumped": {}},
        {"keys_deleted": ["batch:b", "batch:c"], "namespaces_bumped": {}}]
    assert cache.get_many(["batch:a", "batch:b", "batch:c"]) == {}
    # and both events roll up to completed
    assert [_event_status(e) for e in events] == [EventStatus.COMPLETED] * 2


@pytest.mark.django_db
def test_duplicate_delivery_of_a_batch_claims_nothing(broker):
    # given a batch that has run once
    jobs = _jobs(3)
    assert _run_batch(noop, _ids(jobs)) == _counts(jobs=3, claimed=3, succeeded=3)
    before = [_row(job) for job in jobs]

    # when the same message is delivered again
    again = _run_batch(noop, _ids(jobs))

    # then it claims nothing and changes nothing: no second attempt
    assert again == _counts(jobs=3, claimed=0, succeeded=0)
    assert [_row(job) for job in jobs] == before
    assert all(_outcomes(job) == ["succeeded"] for job in jobs)
    assert JobAttempt.objects.filter(job__in=jobs).count() == 3


@pytest.mark.django_db
def test_batch_runs_only_its_runnable_jobs(broker):
    # given a batch mixing runnable jobs with finished, cancelled, future and deleted ones
    now = timezone.now()
    [queued] = _jobs(1)
    [retrying] = _jobs(1, status=JobStatus.RETRYING, attempts=1,
                       next_retry_at=now - timedelta(seconds=1))
    [done] = _jobs(1, status=JobStatus.SUCCEEDED, attempts=1, result={"earlier": True},
                   started_at=now, finished_at=now)
    [cancelled] = _jobs(1, status=JobStatus.CANCELLED, finished_at=now)
    [future] = _jobs(1, run_at=now + timedelta(hours=1))
    [deleted] = _jobs(1)
    deleted_id = str(deleted.pk)
    deleted.delete()
    untouched = [done, cancelled, future]
    before = [_row(job) for job in untouched]

    # when the batch is delivered
    counts = _run_batch(noop, [str(done.pk), str(queued.pk), str(cancelled.pk), deleted_id,
                               str(future.pk), str(retrying.pk)])

    # then only the queued and the retrying job ran, each recording its attempt
    assert counts == _counts(jobs=6, claimed=2, succeeded=2)
    queued, retrying = _fresh([queued, retrying])
    assert (queued.status, queued.attempts, queued.result) == (
        JobStatus.SUCCEEDED, 1, {"ok": True})
    assert (retrying.status, retrying.attempts, retrying.result) == (
        JobStatus.SUCCEEDED, 2, {"ok": True})
    assert _outcomes(queued) == _outcomes(retrying) == ["succeeded"]
    # and the others are exactly as they were, with no attempt recorded
    assert [_row(job) for job in untouched] == before
    assert not JobAttempt.objects.filter(job__in=untouched).exists()


@pytest.mark.django_db
def test_failures_in_a_batch_are_per_job(broker):
    # given a batch in which one job fails transiently and one permanently, the permanent one
    # sharing its event with a healthy job
    ok1, transient, ok2, permanent, ok3 = jobs = _jobs(5, kind="test_batch", params=[
        {}, {"fail": "transient"}, {}, {"fail": "permanent"}, {}])
    doomed, healthy = EventFactory(), EventFactory()
    _attach(doomed, ok1, permanent)
    _attach(healthy, ok2, ok3)

    # when the batch is delivered
    counts = _run_batch(batch_body, _ids(jobs))

    # then the return value counts each outcome
    assert counts == _counts(jobs=5, claimed=5, succeeded=3, retrying=1, dead=1)
    ok1, transient, ok2, permanent, ok3 = _fresh(jobs)
    # and the others in the batch still succeeded, each with its own result
    for job in (ok1, ok2, ok3):
        assert (job.status, job.attempts, job.result) == (
            JobStatus.SUCCEEDED, 1, {"job": str(job.pk)})
        assert _outcomes(job) == ["succeeded"]
    # and the permanent failure is dead at once
    assert (permanent.status, permanent.attempts) == (JobStatus.DEAD, 1)
    assert permanent.error == {"type": "PermanentError", "message": "the input can never work"}
    assert _outcomes(permanent) == ["failed"]
    # and the transient one is retrying, due after the countdown it asked for
    assert (transient.status, transient.attempts) == (JobStatus.RETRYING, 1)
    assert transient.error["type"] == "TransientError"
    assert transient.enqueued_at is not None
    wait = transient.next_retry_at - timezone.now()
    assert timedelta(seconds=RETRY_AFTER - 5) < wait <= timedelta(seconds=RETRY_AFTER)
    assert _outcomes(transient) == ["retry"]
    # and its retry is a message of its own: single form, task id = job id, with an ETA
    [retry] = queued_tasks(broker, "events")
    assert (retry["task"], retry["id"], retry["arg"]) == (
        "conveyor.demo.test_batch", str(transient.pk), str(transient.pk))
    assert retry["eta"] is not None
    assert abs(datetime.fromisoformat(retry["eta"]) - transient.next_retry_at) < (
        timedelta(seconds=2))
    # and the events roll up: failed where a job is dead, completed where all succeeded
    assert (_event_status(doomed), _event_status(healthy)) == (
        EventStatus.FAILED, EventStatus.COMPLETED)


@pytest.mark.django_db
def test_a_result_that_cannot_be_stored_does_not_stop_the_rest_of_the_batch(broker):
    # given a batch whose second job returns a result JSON cannot hold (a datetime)
    jobs = _jobs(3, kind="test_batch", params=[
        {}, {"fail": "unstorable"}, {}])

    # when the batch is delivered
    batch_body.apply(args=[_ids(jobs)])

    # then the healthy jobs are recorded as succeeded all the same, as they would be alone
    first, _, third = _fresh(jobs)
    assert [(j.status, j.result) for j in (first, third)] == [
        (JobStatus.SUCCEEDED, {"job": str(first.pk)}),
        (JobStatus.SUCCEEDED, {"job": str(third.pk)})]
    assert _outcomes(first) == _outcomes(third) == ["succeeded"]
    # and the job with the unstorable result is dead (retrying would return the same value)
    bad = _fresh(jobs)[1]
    assert (bad.status, bad.error["type"]) == (JobStatus.DEAD, "TypeError")
    assert _outcomes(bad) == ["failed"]


@pytest.mark.django_db
def test_a_retrying_job_is_not_claimed_before_its_backoff_ends(broker):
    # given a job in backoff until a minute from now, and one whose backoff is over
    waiting, due = _jobs(2, kind="test_batch", params=[{}, {}])
    now = timezone.now()
    Job.objects.filter(pk=waiting.pk).update(status=JobStatus.RETRYING, attempts=1,
                                             next_retry_at=now + timedelta(minutes=1))
    Job.objects.filter(pk=due.pk).update(status=JobStatus.RETRYING, attempts=1,
                                         next_retry_at=now - timedelta(seconds=1))

    # when an early duplicate of their messages arrives, as a batch and alone
    counts = batch_body.apply(args=[_ids([waiting, due])]).get()
    alone = batch_body.apply(args=[str(waiting.pk)]).get()

    # then only the job whose backoff is over runs; the other keeps waiting
    assert counts["claimed"] == 1 and alone == {"skipped": True}
    waiting, due = _fresh([waiting, due])
    assert (waiting.status, waiting.attempts) == (JobStatus.RETRYING, 1)
    assert (due.status, due.attempts) == (JobStatus.SUCCEEDED, 2)


@pytest.mark.django_db
def test_soft_time_limit_releases_the_rest_of_the_batch_to_the_relay(broker):
    # given four jobs sent as one batch message, the second of which hits the soft time limit
    jobs = _jobs(4, kind="test_batch", params=[{}, {"fail": "soft_time_limit"}, {}, {}])
    outbox_send(jobs)
    assert [m["arg"] for m in queued_tasks(broker, "events")] == [_ids(jobs)]

    # when the worker runs that message
    [counts] = _deliver(broker, "events")

    # then the first job succeeded and the second is retrying on its own message
    assert counts == _counts(jobs=4, claimed=4, succeeded=1, retrying=1, released=2)
    first, second, third, fourth = _fresh(jobs)
    assert (first.status, first.attempts) == (JobStatus.SUCCEEDED, 1)
    assert (second.status, second.attempts) == (JobStatus.RETRYING, 1)
    assert second.error["type"] == "TimeoutError"
    assert "soft time limit" in second.error["message"]
    assert _outcomes(second) == ["retry"]
    assert [(m["id"], m["arg"]) for m in queued_tasks(broker, "events")] == [
        (str(second.pk), str(second.pk))]
    # and the jobs never started are queued again, as if never claimed nor sent
    for job in (third, fourth):
        assert (job.status, job.attempts, job.enqueued_at) == (JobStatus.QUEUED, 0, None)
        assert (job.started_at, job.worker) == (None, "")
        assert _outcomes(job) == []

    # when the outbox relay runs
    assert outbox_relay(grace_seconds=0) == 2

    # then it sends the two released jobs, together, and only them
    assert [m["arg"] for m in queued_tasks(broker, "events")] == [
        str(second.pk), [str(third.pk), str(fourth.pk)]]
    # and delivered, they run as first attempts
    assert _run_batch(batch_body, [str(third.pk), str(fourth.pk)]) == _counts(
        jobs=2, claimed=2, succeeded=2)
    for job in _fresh([third, fourth]):
        assert (job.status, job.attempts, _outcomes(job)) == (
            JobStatus.SUCCEEDED, 1, ["succeeded"])


@pytest.mark.django_db
def test_jobs_succeed_stores_each_jobs_own_result():
    # given claimed jobs (PostgreSQL: one UPDATE … FROM unnest; elsewhere: one per result),
    # and one job of the same kind left out of the batch
    jobs = _jobs(5)
    [outsider] = _jobs(1)
    claimed = jobs_claim(job_ids=_ids(jobs), worker="w1")
    assert [j.pk for j in claimed] == [j.pk for j in jobs]
    results = [{"n": 1}, {"n": 2, "text": "café, it's \"quoted\" \\ {a,b}", "list": [1, 2]},
               {"n": 1}, "done", None]

    # when their successes are recorded together
    jobs_succeed(outcomes=list(zip(claimed, results, strict=True)))

    # then each job has its own result, the same finish time and one succeeded attempt
    stored = _fresh(jobs)
    assert [j.result for j in stored] == results
    assert all(j.status == JobStatus.SUCCEEDED and j.error is None for j in stored)
    assert len({j.finished_at for j in stored}) == 1
    assert all(_outcomes(j) == ["succeeded"] for j in stored)
    # and the job outside the batch is untouched
    outsider.refresh_from_db()
    assert (outsider.status, outsider.result, _outcomes(outsider)) == (JobStatus.QUEUED, None, [])

"""The job lifecycle on a real worker: retries per policy, dead letters, duplicate delivery."""

import pytest
import redis
from django.conf import settings

from domain.common.errors import PermanentError, TransientError
from domain.jobs.models import Job, JobStatus
from domain.jobs.outbox import outbox_send
from domain.jobs.registry import JobKind, register_job_kind
from domain.jobs.retry import RetryPolicy
from domain.jobs.services import job_create
from tests.conftest import broker_key, wait_for
from tests.factories import EventFactory
from workers.base import job_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

# A test-only kind with a fast policy: backoff of at most a second keeps the suite quick
# while still going through Celery's real retry (a new message with a countdown).
FAST = RetryPolicy("test_fast", max_attempts=3, backoff_factor=1, backoff_max=1)
FLAKY = register_job_kind(JobKind(name="test_flaky", task_name="conveyor.demo.test_flaky",
                                  description="fails on demand",
                                  params_schema={"type": "object"}, retry=FAST))


SLOW = RetryPolicy("test_slow", max_attempts=3, backoff_factor=1, backoff_max=6 * 3600)
SLOW_RETRY = register_job_kind(JobKind(
    name="test_slow_retry", task_name="conveyor.demo.test_slow_retry",
    description="asks to be retried in two hours", params_schema={"type": "object"},
    retry=SLOW))


@job_task(kind=SLOW_RETRY)
def slow_retry(job: Job) -> dict:
    if job.attempts == 1:
        raise TransientError("come back later", retry_after=2 * 3600)
    return {"attempt": job.attempts}


def _effects() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@job_task(kind=FLAKY)
def flaky(job: Job) -> dict:
    """Fails `fail_times` times with the given error, then counts one effect."""
    if job.attempts <= job.params.get("fail_times", 0):
        if job.params.get("error") == "permanent":
            raise PermanentError("the input can never work")
        raise TransientError("the other side is down")
    effects = _effects().incr(f"{settings.TEST_KEY_PREFIX}effects:{job.pk}")
    return {"effects": effects}


def _finished(job_id):
    job = Job.objects.get(pk=job_id)
    return job if job.status in (JobStatus.SUCCEEDED, JobStatus.DEAD) else None


def test_transient_failures_retry_then_succeed(celery_worker_thread):
    job = job_create(kind="test_flaky", params={"fail_times": 2})
    done = wait_for(lambda: _finished(job.pk), message="the job to finish")
    assert done.status == JobStatus.SUCCEEDED
    assert done.attempts == 3
    assert list(done.attempt_log.values_list("outcome", flat=True)) == [
        "retry", "retry", "succeeded"]
    assert done.attempt_log.first().error_type == "TransientError"
    assert _effects().get(f"{settings.TEST_KEY_PREFIX}effects:{job.pk}") == b"1"


def test_permanent_error_goes_dead_at_once_and_fails_its_event(celery_worker_thread):
    event = EventFactory(type="demo.ping")
    job = Job.objects.create(event=event, handler="h", kind="test_flaky", max_attempts=3,
                             params={"fail_times": 5, "error": "permanent"})
    outbox_send([job])
    done = wait_for(lambda: _finished(job.pk), message="the job to die")
    assert done.status == JobStatus.DEAD
    assert done.attempts == 1
    assert done.error == {"type": "PermanentError", "message": "the input can never work"}
    assert "PermanentError" in done.traceback
    wait_for(lambda: Job.objects.get(pk=job.pk).event.status == "failed",
             message="the event to be failed")


def test_transient_errors_exhaust_attempts_and_go_dead(celery_worker_thread):
    job = job_create(kind="test_flaky", params={"fail_times": 99})
    done = wait_for(lambda: _finished(job.pk), message="the job to die")
    assert done.status == JobStatus.DEAD
    assert done.attempts == 3
    assert list(done.attempt_log.values_list("outcome", flat=True)) == [
        "retry", "retry", "failed"]
    assert _effects().get(f"{settings.TEST_KEY_PREFIX}effects:{job.pk}") is None


def test_same_message_delivered_twice_has_one_effect(celery_worker_thread):
    job = job_create(kind="test_flaky", params={})
    outbox_send([job])  # a second copy of the same message (same task id)
    outbox_send([job])  # and a third
    done = wait_for(lambda: _finished(job.pk), message="the job to finish")
    assert done.status == JobStatus.SUCCEEDED
    # Give the duplicates time to be consumed and skipped.
    wait_for(lambda: not _pending_messages(), message="the queue to drain")
    assert Job.objects.get(pk=job.pk).attempts == 1
    assert _effects().get(f"{settings.TEST_KEY_PREFIX}effects:{job.pk}") == b"1"


def test_cancelled_job_never_runs(celery_worker_thread):
    job = Job.objects.create(kind="test_flaky", max_attempts=3, params={},
                             status=JobStatus.CANCELLED)
    outbox_send([job])
    wait_for(lambda: not _pending_messages(), message="the message to be consumed")
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.attempts == 0
    assert _effects().get(f"{settings.TEST_KEY_PREFIX}effects:{job.pk}") is None


def _pending_messages() -> int:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return broker.llen(broker_key("events")) + broker.hlen(broker_key("unacked"))


def test_long_backoff_waits_in_the_database_not_on_the_broker(celery_worker_thread):
    from datetime import timedelta

    from django.utils import timezone

    from domain.jobs.outbox import outbox_relay

    # given a job whose first attempt is told to come back in two hours
    job = job_create(kind="test_slow_retry", params={})
    retrying = wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RETRYING).first(),
                        message="the job to be retrying")
    # then it waits in the row, with no broker message (no ETA past the visibility timeout)
    assert retrying.enqueued_at is None
    assert retrying.next_retry_at - timezone.now() > timedelta(hours=1, minutes=59)
    wait_for(lambda: not _pending_messages(), message="the first message to be acknowledged")
    assert outbox_relay(grace_seconds=0) == 0  # not due yet

    # when the time comes, the relay sends it and it succeeds
    Job.objects.filter(pk=job.pk).update(next_retry_at=timezone.now() - timedelta(seconds=1))
    assert outbox_relay(grace_seconds=0) == 1
    done = wait_for(lambda: _finished(job.pk), message="the job to finish")
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 2

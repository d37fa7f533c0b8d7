"""The base task for jobs: claim, run, record the outcome, retry per policy.

A job task is "an API": it takes a job id, and everything else — loading, the status
transitions, the retry decision — happens here, the same way for every kind of work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn

from celery import Task, shared_task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded

from domain.common.correlation import reset_correlation_id, set_correlation_id
from domain.events import services
from domain.events.models import Job
from domain.events.registry import job_kind_for_task
from workers.retry import MAX_BROKER_COUNTDOWN, NEVER, RetryPolicy

logger = logging.getLogger(__name__)


class ConveyorTask(Task):
    """Every conveyor task has a named retry policy (`retry_policy`)."""

    retry_policy: RetryPolicy = NEVER


class JobTask(ConveyorTask):
    """A task whose one argument is a Job id. Its retry policy is its job kind's."""

    job_body: Callable[[Job], Any]

    @property
    def retry_policy(self) -> RetryPolicy:  # type: ignore[override]
        kind = job_kind_for_task(self.name)
        if kind is None:
            raise LookupError(f"no job kind is registered for task {self.name!r}")
        return kind.retry

    def run_job(self, job_id: str) -> Any:
        job = services.job_claim(job_id=job_id, worker=self.request.hostname or "")
        if job is None:
            # Already done, cancelled, running elsewhere, or not due: this delivery is a
            # duplicate and must have no effect (reliability contract #2).
            logger.info("job not runnable, skipped job_id=%s task=%s", job_id, self.name)
            return {"skipped": True}
        token = set_correlation_id(job.correlation_id or job_id)
        try:
            return self._run_claimed(job)
        finally:
            reset_correlation_id(token)

    def _run_claimed(self, job: Job) -> Any:
        policy = self.retry_policy
        logger.info("job started job_id=%s kind=%s attempt=%d/%d", job.pk, job.kind,
                    job.attempts, job.max_attempts)
        try:
            result = self.job_body(job)
        except SoftTimeLimitExceeded as exc:
            self._failed(job, policy, TimeoutError(f"soft time limit exceeded: {exc}"))
        except Exception as exc:  # noqa: BLE001 - classified, recorded and re-raised below
            self._failed(job, policy, exc)
        services.job_succeed(job=job, result=result)
        logger.info("job succeeded job_id=%s kind=%s attempt=%d", job.pk, job.kind, job.attempts)
        return result

    def _failed(self, job: Job, policy: RetryPolicy, exc: Exception) -> NoReturn:
        # The job row's max_attempts (fixed when the job was created) is the authority.
        if policy.is_transient(exc) and job.attempts < job.max_attempts:
            countdown = policy.countdown(job.attempts, exc)
            if countdown > MAX_BROKER_COUNTDOWN:
                # A long wait is kept in the database, not as a broker ETA: Redis would
                # redeliver an ETA message held past the visibility timeout (a duplicate).
                services.job_schedule_retry(job=job, exc=exc, countdown=countdown,
                                            via_broker=False)
                logger.warning("job failed, retry parked in the database job_id=%s "
                               "countdown=%ss error=%r", job.pk, countdown, exc)
                raise Ignore()
            services.job_schedule_retry(job=job, exc=exc, countdown=countdown)
            logger.warning("job failed, retrying job_id=%s kind=%s attempt=%d countdown=%ss "
                           "error=%r", job.pk, job.kind, job.attempts, countdown, exc)
            try:
                raise self.retry(exc=exc, countdown=countdown, max_retries=None)
            except Retry:
                raise
            except Exception as publish_error:
                # The retry message did not reach the broker: the row says `retrying` with
                # no message in flight, which is exactly what the outbox relay looks for.
                services.job_retry_not_sent(job=job)
                logger.error("retry not published job_id=%s error=%r", job.pk, publish_error)
                raise exc from publish_error
        services.job_fail(job=job, exc=exc)
        logger.error("job dead job_id=%s kind=%s attempt=%d error=%r", job.pk, job.kind,
                     job.attempts, exc)
        raise exc


def job_task(*, name: str) -> Callable[[Callable[[Job], Any]], JobTask]:
    """Declare a job task: `fn(job) -> result` becomes a Celery task taking a job id."""

    def decorator(fn: Callable[[Job], Any]) -> JobTask:
        @shared_task(name=name, bind=True, base=JobTask, job_body=staticmethod(fn))
        def run(self: JobTask, job_id: str) -> Any:
            return self.run_job(job_id)

        run.__doc__ = fn.__doc__
        return run

    return decorator

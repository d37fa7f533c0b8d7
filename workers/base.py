"""The base task for jobs: claim, run, record the outcome, retry per policy.

A job task is "an API": it takes a job id (or, for a micro-batch, a list of job ids), and
everything else — loading, the status transitions, the retry decision — happens here, the same
way for every kind of work.
"""

from __future__ import annotations

import json
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
            result = _storable(self.job_body(job))
        except SoftTimeLimitExceeded as exc:
            self._failed(job, policy, TimeoutError(f"soft time limit exceeded: {exc}"))
        except Exception as exc:  # noqa: BLE001 - classified, recorded and re-raised below
            self._failed(job, policy, exc)
        services.job_succeed(job=job, result=result)
        logger.info("job succeeded job_id=%s kind=%s attempt=%d", job.pk, job.kind, job.attempts)
        return result

    def _failed(self, job: Job, policy: RetryPolicy, exc: Exception) -> NoReturn:
        decision, countdown = self._record_failure(job, policy, exc)
        if decision == "parked":
            raise Ignore()
        if decision == "retrying":
            try:
                raise self.retry(exc=exc, countdown=countdown, max_retries=None)
            except Retry:
                raise
            except Exception as publish_error:
                self._retry_not_sent(job, publish_error)
                raise exc from publish_error
        raise exc

    def _record_failure(self, job: Job, policy: RetryPolicy,
                        exc: Exception) -> tuple[str, int | None]:
        """Write the failed attempt and decide: ("retrying", countdown) for a retry through the
        broker, ("parked", countdown) for one kept in the database, or ("dead", None)."""
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
                return "parked", countdown
            services.job_schedule_retry(job=job, exc=exc, countdown=countdown)
            logger.warning("job failed, retrying job_id=%s kind=%s attempt=%d countdown=%ss "
                           "error=%r", job.pk, job.kind, job.attempts, countdown, exc)
            return "retrying", countdown
        services.job_fail(job=job, exc=exc)
        logger.error("job dead job_id=%s kind=%s attempt=%d error=%r", job.pk, job.kind,
                     job.attempts, exc)
        return "dead", None

    @staticmethod
    def _retry_not_sent(job: Job, publish_error: Exception) -> None:
        # The retry message did not reach the broker: the row says `retrying` with no
        # message in flight, which is exactly what the outbox relay looks for.
        services.job_retry_not_sent(job=job)
        logger.error("retry not published job_id=%s error=%r", job.pk, publish_error)

    def run_jobs(self, job_ids: list[str]) -> dict:
        """A micro-batch (one message, many jobs of this kind): claim the runnable ones at
        once, run each body, record the successes together.

        Each job keeps the single-job contract: a failing one retries with a message of its
        own (job id = task id) or goes dead, without stopping the others; a duplicate delivery
        claims nothing. If the soft time limit strikes, the jobs not yet run go back to
        `queued` for the outbox relay. If the process dies, the claimed jobs are `running`
        and the orphan rescue requeues them; the bodies are idempotent (reliability #2).
        """
        jobs = services.jobs_claim(job_ids=job_ids, worker=self.request.hostname or "")
        policy = self.retry_policy
        counts = {"jobs": len(job_ids), "claimed": len(jobs), "succeeded": 0, "retrying": 0,
                  "parked": 0, "dead": 0, "released": 0}
        outcomes: list[tuple[Job, Any]] = []
        try:
            for index, job in enumerate(jobs):
                token = set_correlation_id(job.correlation_id or str(job.pk))
                try:
                    outcomes.append((job, _storable(self.job_body(job))))
                except SoftTimeLimitExceeded as exc:
                    decision = self._failed_in_batch(
                        job, policy, TimeoutError(f"soft time limit exceeded: {exc}"))
                    counts[decision] += 1
                    counts["released"] = len(services.jobs_release(jobs=jobs[index + 1:]))
                    break
                except Exception as exc:  # noqa: BLE001 - classified and recorded per job
                    counts[self._failed_in_batch(job, policy, exc)] += 1
                finally:
                    reset_correlation_id(token)
        finally:
            services.jobs_succeed(outcomes=outcomes)
        counts["succeeded"] = len(outcomes)
        logger.info("job batch done task=%s %s", self.name,
                    " ".join(f"{k}={v}" for k, v in counts.items()))
        return counts

    def _failed_in_batch(self, job: Job, policy: RetryPolicy, exc: Exception) -> str:
        decision, countdown = self._record_failure(job, policy, exc)
        if decision == "retrying":
            try:
                self.apply_async(args=[str(job.pk)], task_id=str(job.pk), countdown=countdown,
                                 headers={"correlation_id": job.correlation_id})
            except Exception as publish_error:  # noqa: BLE001 - the relay takes it from here
                self._retry_not_sent(job, publish_error)
        return decision


def _storable(result: Any) -> Any:
    """The result, if the job row can store it (JSON); TypeError or ValueError otherwise, which
    fails this job (permanently: retrying returns the same value) instead of the bookkeeping
    afterwards, where it would strand the job, or a whole micro-batch, in `running`."""
    json.dumps(result)
    return result


def job_task(*, name: str) -> Callable[[Callable[[Job], Any]], JobTask]:
    """Declare a job task: `fn(job) -> result` becomes a Celery task taking a job id."""

    def decorator(fn: Callable[[Job], Any]) -> JobTask:
        @shared_task(name=name, bind=True, base=JobTask, job_body=staticmethod(fn))
        def run(self: JobTask, job_id: str | list[str]) -> Any:
            # A list is a micro-batch (domain/events/outbox.py sends one for kinds with
            # batch_size > 1); a string is one job, and the message's task id is its id.
            if isinstance(job_id, list):
                return self.run_jobs(job_id)
            return self.run_job(job_id)

        run.__doc__ = fn.__doc__
        return run

    return decorator

"""The base task for jobs: claim, run, and carry out what the domain decides.

A job task is "an API": it takes a job id (or, for a micro-batch, a list of job ids), and
everything else — loading, the status transitions, the retry decision — is decided by the job
lifecycle services (domain/jobs/lifecycle.py), the same way for every kind of work. This module
only translates their decisions into Celery's terms: a retry message, an ignored message, or
a failed task.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from typing import Any, NoReturn

from celery import Task, shared_task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from django.db import close_old_connections

from domain.common.correlation import MESSAGE_HEADER, reset_correlation_id, set_correlation_id
from domain.common.errors import DATABASE_UNAVAILABLE
from domain.common.logging import log_context
from domain.jobs import lifecycle
from domain.jobs.lifecycle import Deferred, FailureAction
from domain.jobs.models import Job
from domain.jobs.registry import JobKind
from domain.jobs.retry import MAX_BROKER_COUNTDOWN, NEVER, RetryPolicy
from domain.jobs.selectors import queue_is_paused
from workers.leases import keeper
from workers.metrics import JOB_RUN_SECONDS
from workers.queues import queue_for_task

logger = logging.getLogger(__name__)

# Seconds a process waits before giving a message back while the database is down, or while
# its queue is paused.
REQUEUE_PAUSE = (0.5, 1.5)


class QueuePaused(Exception):
    """The message's queue is paused: nothing is claimed and the message goes back."""


class ConveyorTask(Task):
    """Every conveyor task has a named retry policy (`retry_policy`)."""

    retry_policy: RetryPolicy = NEVER
    # Celery's message handling in the worker's main process, inside the message's log context
    # (its "received" line carries the correlation id).
    Strategy = "workers.strategy:with_log_context"


@contextmanager
def job_log_context(job: Job) -> Iterator[None]:
    """The job's correlation id, id and event id on every line written while it is worked on
    (a micro-batch's message carries only its first job's correlation id)."""
    token = set_correlation_id(job.correlation_id or str(job.pk))
    try:
        with log_context(job_id=job.pk, event_id=job.event_id):
            yield
    finally:
        reset_correlation_id(token)


class JobTask(ConveyorTask):
    """A task whose one argument is a Job id (or a micro-batch's list of them). Its name and
    retry policy are its job kind's."""

    job_kind: JobKind
    job_body: Callable[[Job], Any]
    # A body that takes a message's jobs together (webhook deliveries are sent concurrently)
    # and answers, for each job in order, its result, the exception it failed with,
    # `Deferred` (not now, and not an attempt), or a Future of one of those (still at work:
    # settled when it is done, the job's lease kept meanwhile). Each answer is then carried
    # out as for a job of its own.
    jobs_body: Callable[[list[Job]], list[Any]] | None = None
    # The job row holds the result, the error and every attempt (what the API, the admin and
    # replay read); a django-celery-results row per job task was a second INSERT for each job
    # that nothing reads. Flower still shows job tasks and their results (from task events),
    # and periodic and maintenance tasks keep their result rows.
    ignore_result = True
    # The job's own max_attempts (its row) decides when it is dead, in the lifecycle; Celery's
    # count must never stop a retry first. `retry(max_retries=None)` falls back to this
    # attribute, which Celery defaults to 3: a kind with more attempts had its fourth retry
    # refused ("retry not published") and left to the relay.
    max_retries = None

    @property
    def retry_policy(self) -> RetryPolicy:  # type: ignore[override]
        return self.job_kind.retry

    def run_job(self, job_id: str) -> Any:
        if self.jobs_body is not None:
            return self.run_jobs([job_id])
        job = self._claim(lifecycle.job_claim, job_id=job_id)
        if job is None:
            # Already done, cancelled, running elsewhere, or not due: this delivery is a
            # duplicate and must have no effect (reliability contract #2).
            logger.info("job not runnable, skipped job_id=%s task=%s", job_id, self.name)
            return {"skipped": True}
        with job_log_context(job), keeper.hold([job.pk], job.worker):
            return self._run_claimed(job)

    def _claim(self, claim: Callable[..., Any], **ids: Any) -> Any:
        """Claim through the lifecycle service; when the database does not answer, nothing
        was claimed, and the message goes back to its queue instead of being acknowledged
        with its job left `queued` and no message anywhere (which only the relay's stale
        re-send, 30 minutes later, would find). A short, jittered pause first keeps an outage
        from becoming a hot loop: each process re-reads about one message a second until the
        database is back, and the first claim after it runs the job.

        The same for a message of a paused queue (domain/jobs/models.QueuePause): the worker
        normally stops consuming a queue as soon as it is paused (workers/steering.py), but a
        message it prefetched before, or one reaching a worker that has not yet heard of the
        pause, is given back unclaimed, the job left `queued` with no attempt used; the pause
        keeps a worker that has not heard from taking it again at once, and it catches up
        within WORKER_HEARTBEAT_SECONDS."""
        try:
            queue = queue_for_task(self.name)
            if queue is not None and queue_is_paused(queue):
                raise QueuePaused(queue)
            return claim(worker=self.request.hostname or "", **ids)
        except QueuePaused as exc:
            logger.info("queue paused, message given back unclaimed task=%s queue=%s ids=%s",
                        self.name, exc, ids)
            time.sleep(random.uniform(*REQUEUE_PAUSE))  # noqa: S311 - jitter, not secrecy
            raise Reject(exc, requeue=True) from exc
        except DATABASE_UNAVAILABLE as exc:
            close_old_connections()
            logger.warning("database unavailable, message requeued task=%s ids=%s error=%r",
                           self.name, ids, exc)
            time.sleep(random.uniform(*REQUEUE_PAUSE))  # noqa: S311 - jitter, not secrecy
            raise Reject(exc, requeue=True) from exc

    def _run_claimed(self, job: Job) -> Any:
        logger.info("job started job_id=%s kind=%s attempt=%d/%d", job.pk, job.kind,
                    job.attempts, job.max_attempts)
        started = time.perf_counter()
        try:
            try:
                result = _storable(self.job_body(job))
            finally:
                JOB_RUN_SECONDS.observe(time.perf_counter() - started, job.kind)
        except SoftTimeLimitExceeded as exc:
            self._failed(job, TimeoutError(f"soft time limit exceeded: {exc}"))
        except Exception as exc:  # noqa: BLE001 - the domain decides; carried out below
            self._failed(job, exc)
        lifecycle.job_succeed(job=job, result=result)
        logger.info("job succeeded job_id=%s kind=%s attempt=%d", job.pk, job.kind, job.attempts)
        return result

    def _failed(self, job: Job, exc: Exception) -> NoReturn:
        decision = lifecycle.job_failed(job=job, exc=exc)
        if decision.action == FailureAction.PARK:
            raise Ignore()
        if decision.action == FailureAction.RETRY:
            try:
                raise self.retry(exc=exc, countdown=decision.countdown, max_retries=None)
            except Retry:
                raise
            except Exception as publish_error:
                self._retry_not_sent(job, publish_error)
                raise exc from publish_error
        raise exc

    @staticmethod
    def _retry_not_sent(job: Job, publish_error: Exception) -> None:
        lifecycle.job_retry_not_sent(job=job)
        logger.error("retry not published, left to the relay job_id=%s error=%r", job.pk,
                     publish_error)

    def run_jobs(self, job_ids: list[str]) -> dict:
        """A micro-batch (one message, many jobs of this kind): claim the runnable ones at
        once, run each body, record the successes together.

        Each job keeps the single-job contract: a failing one retries with a message of its
        own (job id = task id) or goes dead, without stopping the others; a duplicate delivery
        claims nothing. If the soft time limit strikes, the jobs not yet run go back to
        `queued` for the outbox relay. If the process dies, the claimed jobs are `running`
        and the orphan rescue requeues them; the bodies are idempotent (reliability #2).
        """
        jobs = self._claim(lifecycle.jobs_claim, job_ids=job_ids)
        counts = {"jobs": len(job_ids), "claimed": len(jobs), "succeeded": 0, "retrying": 0,
                  "parked": 0, "dead": 0, "released": 0}
        outcomes: list[tuple[Job, Any]] = []
        with keeper.hold([job.pk for job in jobs], jobs[0].worker if jobs else ""):
            if self.jobs_body is not None:
                counts.update(deferred=0, later=0)
                self._run_together(jobs, counts, outcomes)
            else:
                self._run_batch(jobs, counts, outcomes)
        counts["succeeded"] = len(outcomes)
        logger.info("job batch done task=%s %s", self.name,
                    " ".join(f"{k}={v}" for k, v in counts.items()))
        return counts

    def _run_batch(self, jobs: list[Job], counts: dict, outcomes: list[tuple[Job, Any]]) -> None:
        seconds: list[float] = []  # each job's own body (a batch holds one kind)
        try:
            for index, job in enumerate(jobs):
                started = time.perf_counter()
                with job_log_context(job):
                    try:
                        outcomes.append((job, _storable(self.job_body(job))))
                    except SoftTimeLimitExceeded as exc:
                        action = self._failed_in_batch(
                            job, TimeoutError(f"soft time limit exceeded: {exc}"))
                        counts[action] += 1
                        counts["released"] = len(lifecycle.jobs_release(jobs=jobs[index + 1:]))
                        break
                    except Exception as exc:  # noqa: BLE001 - the domain decides, per job
                        counts[self._failed_in_batch(job, exc)] += 1
                    finally:
                        seconds.append(time.perf_counter() - started)
        finally:
            JOB_RUN_SECONDS.observe_many(seconds, self.job_kind.name)
            lifecycle.jobs_succeed(outcomes=outcomes)

    def _run_together(self, jobs: list[Job], counts: dict,
                      outcomes: list[tuple[Job, Any]]) -> None:
        if not jobs:
            return
        started = time.perf_counter()
        try:
            answers = self.jobs_body(jobs)
        except SoftTimeLimitExceeded as exc:
            answers = [TimeoutError(f"soft time limit exceeded: {exc}")] * len(jobs)
        except Exception as exc:  # noqa: BLE001 - the whole body failed: each job's failure
            answers = [exc] * len(jobs)
        now = [(job, a) for job, a in zip(jobs, answers, strict=True)
               if not isinstance(a, Future)]
        # The jobs worked on together: each ran for the body's time (a late one, until its
        # answer came: _settle_late).
        JOB_RUN_SECONDS.observe_many([time.perf_counter() - started] * len(now),
                                     self.job_kind.name)
        for job, answer in zip(jobs, answers, strict=True):
            if isinstance(answer, Future):
                # Still at work after the task (a webhook whose receiver is slow): the job
                # keeps its lease until the answer comes, and is settled then, in the thread
                # that answers; the task, and its worker thread, go on to the next message.
                counts["later"] = counts.get("later", 0) + 1
                keeper.adopt([job.pk], job.worker)
                answer.add_done_callback(partial(self._settle_late, job, started))
        self._settle(now, counts, outcomes)

    def _settle(self, answered: list[tuple[Job, Any]], counts: dict,
                outcomes: list[tuple[Job, Any]]) -> None:
        """Carry out a batch body's answers: results succeed together, exceptions fail (each
        job by its policy), `Deferred` jobs wait without using an attempt."""
        deferred: dict[int, list[Job]] = {}
        for job, answer in answered:
            if isinstance(answer, Deferred):
                deferred.setdefault(answer.countdown, []).append(job)
                continue
            if not isinstance(answer, BaseException):
                try:
                    outcomes.append((job, _storable(answer)))
                    continue
                except (TypeError, ValueError) as exc:
                    answer = exc
            with job_log_context(job):
                counts[self._failed_in_batch(job, answer)] += 1
        lifecycle.jobs_succeed(outcomes=outcomes)
        for countdown, group in deferred.items():
            counts["deferred"] = counts.get("deferred", 0) + len(self._defer(group, countdown))

    def _settle_late(self, job: Job, started: float, answer: Future) -> None:
        JOB_RUN_SECONDS.observe(time.perf_counter() - started, job.kind)
        # In the thread that answered: the task's context is not there.
        with log_context(task=self.name, worker=job.worker), job_log_context(job):
            try:
                try:
                    result = answer.result()
                except Exception as exc:  # noqa: BLE001 - the job's failure, decided below
                    result = exc
                counts = {"succeeded": 0, "retrying": 0, "parked": 0, "dead": 0}
                self._settle([(job, result)], counts, [])
            except Exception:
                logger.exception("a late answer could not be recorded job_id=%s", job.pk)
            finally:
                keeper.release([job.pk])
                close_old_connections()

    def _defer(self, jobs: list[Job], countdown: int) -> list[Job]:
        """Carry out `Deferred`: the jobs wait in the database (`jobs_defer`), and a message
        with all of them is sent with the countdown; a long wait, or a message that cannot be
        sent, is left to the relay, which sends them when due."""
        via_broker = countdown <= MAX_BROKER_COUNTDOWN
        deferred = lifecycle.jobs_defer(jobs=jobs, countdown=countdown, via_broker=via_broker)
        if deferred and via_broker:
            try:
                self.apply_async(args=[[str(job.pk) for job in deferred]], countdown=countdown)
            except Exception as publish_error:  # noqa: BLE001 - the relay takes it from here
                lifecycle.jobs_not_sent(jobs=deferred)
                logger.error("deferred jobs not published, left to the relay count=%d "
                             "error=%r", len(deferred), publish_error)
        return deferred

    def _failed_in_batch(self, job: Job, exc: Exception) -> str:
        decision = lifecycle.job_failed(job=job, exc=exc)
        if decision.action == FailureAction.RETRY:
            try:
                self.apply_async(args=[str(job.pk)], task_id=str(job.pk),
                                 countdown=decision.countdown,
                                 headers={MESSAGE_HEADER: job.correlation_id})
            except Exception as publish_error:  # noqa: BLE001 - the relay takes it from here
                self._retry_not_sent(job, publish_error)
        return decision.action.value


def _storable(result: Any) -> Any:
    """The result, if the job row can store it (JSON); TypeError or ValueError otherwise, which
    fails this job (permanently: retrying returns the same value) instead of the bookkeeping
    afterwards, where it would strand the job, or a whole micro-batch, in `running`."""
    json.dumps(result)
    return result


def jobs_task(*, kind: JobKind) -> Callable[[Callable[[list[Job]], list[Any]]], JobTask]:
    """Declare the task of a job kind whose body takes a message's jobs together:
    `fn(jobs) -> [result | exception | Deferred, …]`, one answer per job, in order."""

    def decorator(fn: Callable[[list[Job]], list[Any]]) -> JobTask:
        def one(job: Job) -> Any:
            answer = fn([job])[0]
            if isinstance(answer, BaseException):
                raise answer
            return answer

        task = job_task(kind=kind, jobs_body=staticmethod(fn))(one)
        task.__doc__ = fn.__doc__
        return task

    return decorator


def job_task(*, kind: JobKind, **options: Any) -> Callable[[Callable[[Job], Any]], JobTask]:
    """Declare the task of a job kind: `fn(job) -> result` becomes a Celery task taking a job
    id, named by the kind (`kind.task_name`, which also picks its queue), with the kind's
    retry policy. One declaration, nothing repeated."""

    def decorator(fn: Callable[[Job], Any]) -> JobTask:
        @shared_task(name=kind.task_name, bind=True, base=JobTask, job_kind=kind,
                     job_body=staticmethod(fn), **options)
        def run(self: JobTask, job_id: str | list[str]) -> Any:
            # A list is a micro-batch (domain/jobs/outbox.py sends one for kinds with
            # batch_size > 1); a string is one job, and the message's task id is its id.
            if isinstance(job_id, list):
                return self.run_jobs(job_id)
            return self.run_job(job_id)

        run.__doc__ = fn.__doc__
        return run

    return decorator

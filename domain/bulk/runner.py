"""Carrying a bulk run out, chunk by chunk, in a worker.

Each chunk is one transaction holding three writes: the operation's one set-based statement
over the chunk's key range, the run's checkpoint (last key done and the counters) and the
job's progress. The run row is locked first and its checkpoint compared with the one the
chunk started from, so a second delivery of the same job (a redelivered message, a rescue
racing a slow worker) cannot apply a chunk again: it finds the checkpoint moved and stops.
After a `kill -9` the rescued job starts again from the last committed checkpoint.

Operator requests (pause, cancel) are read under the same lock, so they take effect at the
next chunk boundary: committed chunks stay committed, and the run says how far it got.

A run works in time slices (BULK_SLICE_SECONDS, and at most half the task's soft time limit):
at the end of one, the job hands itself back to the broker (`Deferred`, not an attempt) and
the next slice continues from the checkpoint. A run of any length therefore stays inside the
task time limits, and a worker restart between slices costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import CharField, Count, F, Max, UUIDField
from django.db.models.functions import Cast
from django.utils import timezone
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from domain.bulk import inputs
from domain.bulk.metrics import count_chunk_on_commit
from domain.bulk.models import FINISHED_STATUSES, BulkRequest, BulkRun, BulkRunStatus
from domain.bulk.registry import CsvOperation, SetBasedOperation, get_bulk_operation
from domain.common.errors import PermanentError, error_body
from domain.events.services import event_publish
from domain.jobs import lifecycle
from domain.jobs.lifecycle import Deferred
from domain.jobs.models import Job

logger = logging.getLogger(__name__)

# PostgreSQL's lock_not_available (lock_timeout struck) and deadlock_detected: rows another
# transaction holds. The chunk is rolled back and tried again, smaller, after a pause.
LOCK_CONFLICT_CODES = ("55P03", "40P01")

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class _Chunk:
    rows: int
    changed: int


class _Stop(Exception):
    """The run must not go on: an operator's request, or another delivery moved it."""

    def __init__(self, outcome: dict) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def bulk_run_execute(*, job: Job, on_progress: Progress | None = None) -> Any:
    """The body of the `bulk_run` job: run chunks until the rows are done, an operator asks
    for a pause or a cancel, or the time slice ends. Answers the job's result (or `Deferred`
    at the end of a slice)."""
    try:
        run = _begin(run_id=job.params["run_id"], job=job)
    except _Stop as stop:
        return stop.outcome
    except Exception as exc:  # (counting the rows, say): the run shows it, as for a chunk
        _failed(BulkRun(pk=job.params["run_id"]), job, exc)
        raise
    operation = get_bulk_operation(run.operation)
    run.mark = time.monotonic()  # elapsed_seconds counts from here: chunks and pauses between
    slice_ends = run.mark + _slice_seconds()
    try:
        while True:
            if _chunk_with_retries(run, operation) is None:
                return _finish(run, operation)
            if on_progress is not None:
                on_progress(run.rows_done, _total(run))
            if time.monotonic() >= slice_ends:
                logger.info("bulk run slice ended run_id=%s rows_done=%d", run.pk, run.rows_done)
                return Deferred(countdown=0, reason="the run's time slice ended")
            if run.pause_seconds:
                time.sleep(run.pause_seconds)
    except _Stop as stop:
        return stop.outcome
    except Exception as exc:
        _failed(run, job, exc)
        raise


def _slice_seconds() -> float:
    """A slice ends well inside the task's soft time limit, whatever BULK_SLICE_SECONDS says
    (a soft limit striking mid-run costs an attempt and a retry's wait)."""
    soft_limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
    if soft_limit:
        return min(settings.BULK_SLICE_SECONDS, soft_limit / 2)
    return settings.BULK_SLICE_SECONDS


# --- Start and stop -----------------------------------------------------------------------------

def _begin(*, run_id: str, job: Job) -> BulkRun:
    stop = None
    with transaction.atomic():
        run = BulkRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise PermanentError(f"bulk run {run_id} does not exist")
        if run.job_id != job.pk or run.status in (*FINISHED_STATUSES, BulkRunStatus.PAUSED):
            # A job the run has moved on from (it was paused, resumed with a new job, or has
            # ended): this delivery changes nothing.
            stop = {**_outcome(run), "skipped": True}
        elif run.requested:
            stop = _stopped(run)  # (written here, so raised only after the commit)
        else:
            now = timezone.now()
            run.status = BulkRunStatus.RUNNING
            run.started_at = run.started_at or now
            run.updated_at = now
            if run.rows_matched is None:
                run.rows_matched = _rows_to_visit(run)
            run.save(update_fields=["status", "started_at", "updated_at", "rows_matched"])
            lifecycle.job_progress(job_id=job.pk, done=run.rows_done, total=_total(run))
    if stop is not None:
        raise _Stop(stop)
    logger.info("bulk run started run_id=%s operation=%s checkpoint=%r rows_matched=%s",
                run.pk, run.operation, run.checkpoint, run.rows_matched)
    return run


def _rows_to_visit(run: BulkRun) -> int:
    operation = get_bulk_operation(run.operation)
    if isinstance(operation, CsvOperation):
        return run.input_rows or 0
    return operation.scope(run.plan).count()


def _total(run: BulkRun) -> int | None:
    # Rows added to the scope while the run goes can make rows_done pass the first count.
    return None if run.rows_matched is None else max(run.rows_matched, run.rows_done)


def _stopped(run: BulkRun) -> dict:
    """Honour the operator's request (the caller holds the run's row lock)."""
    now = timezone.now()
    run.status = (BulkRunStatus.PAUSED if run.requested == BulkRequest.PAUSE
                  else BulkRunStatus.CANCELLED)
    run.requested = BulkRequest.NONE
    run.updated_at = now
    if run.status == BulkRunStatus.CANCELLED:
        run.finished_at = now
        inputs.input_drop(run)
    run.save(update_fields=["status", "requested", "updated_at", "finished_at", "input_table"])
    logger.info("bulk run %s run_id=%s rows_done=%d checkpoint=%r", run.status, run.pk,
                run.rows_done, run.checkpoint)
    return _outcome(run)


def _outcome(run: BulkRun) -> dict:
    return {"run": str(run.pk), "status": run.status, "rows_done": run.rows_done,
            "rows_changed": run.rows_changed, "checkpoint": run.checkpoint}


def _finish(run: BulkRun, operation) -> dict:
    # The caches are dropped before the run may say `succeeded` (the event's handlers drop
    # them again once it is published, for a read that raced the last chunk).
    payload = None if run.dry_run else operation.finished(run)
    with transaction.atomic():
        locked = _lock(run)
        if locked.status != BulkRunStatus.RUNNING or locked.job_id != run.job_id:
            # (nothing written yet: the raise is safe)
            raise _Stop(_outcome(locked))
        now = timezone.now()
        run.status = BulkRunStatus.SUCCEEDED
        run.requested = BulkRequest.NONE
        run.last_error = None  # (an error it recovered from; lock_retries still counts them)
        run.finished_at = run.updated_at = now
        run.result = ({"would_change": run.rows_changed} if run.dry_run
                      else {"event_type": operation.event_type, "payload": payload})
        inputs.input_drop(run)
        run.save(update_fields=["status", "requested", "finished_at", "updated_at", "result",
                                "input_table", "last_error"])
        lifecycle.job_progress(job_id=run.job_id, done=run.rows_done, total=run.rows_done)
        if payload is not None:
            event_publish(event_type=operation.event_type, payload=payload,
                          api_key=run.api_key, correlation_id=run.correlation_id,
                          by_server=True)
    logger.info("bulk run succeeded run_id=%s rows_done=%d rows_changed=%d seconds=%.2f",
                run.pk, run.rows_done, run.rows_changed, run.elapsed_seconds)
    return _outcome(run)


def _failed(run: BulkRun, job: Job, exc: BaseException) -> None:
    """Record the error on the run: `failed` when the job will not try again, else the run
    stays `running` (its job is retrying) with the error shown."""
    # The worker records a soft time limit as the TimeoutError it is (workers/base.py), which
    # the job retries: judged as the raw exception, the run was marked `failed` while its job
    # retried, and the retry then skipped the failed run.
    judged = TimeoutError(str(exc)) if isinstance(exc, SoftTimeLimitExceeded) else exc
    final = not lifecycle.will_retry(job=job, exc=judged)
    fields = {"last_error": error_body(type(exc).__name__, str(exc)[:2000])["error"],
              "updated_at": timezone.now()}
    if final:
        fields.update(status=BulkRunStatus.FAILED, finished_at=fields["updated_at"])
    try:
        BulkRun.objects.filter(pk=run.pk, job=job, status__in=(
            BulkRunStatus.QUEUED, BulkRunStatus.RUNNING)).update(**fields)
    except Exception:
        logger.exception("bulk run error not recorded run_id=%s", run.pk)
    logger.warning("bulk run chunk failed run_id=%s final=%s error=%r", run.pk, final, exc)


# --- Chunks -------------------------------------------------------------------------------------

def _is_lock_conflict(exc: BaseException) -> bool:
    if not isinstance(exc, OperationalError):
        return False
    code = getattr(exc.__cause__, "pgcode", None)
    return code in LOCK_CONFLICT_CODES or "database is locked" in str(exc)


def _chunk_with_retries(run: BulkRun, operation) -> _Chunk | None:
    """One chunk; rows locked by others past the lock timeout give the chunk back, and it is
    tried again, half the size, after a jittered pause (tenacity). BULK_LOCK_RETRIES in a
    row fail the attempt (a transient error: the job retries later, from the checkpoint)."""

    def smaller(state: RetryCallState) -> None:
        run.chunk_size = max(settings.BULK_MIN_CHUNK_SIZE, run.chunk_size // 2)
        run.lock_retries += 1
        BulkRun.objects.filter(pk=run.pk).update(chunk_size=run.chunk_size,
                                                 lock_retries=F("lock_retries") + 1)
        logger.info("bulk chunk met locked rows, retrying smaller run_id=%s chunk_size=%d",
                    run.pk, run.chunk_size)

    retrying = Retrying(
        retry=retry_if_exception(_is_lock_conflict),
        stop=stop_after_attempt(settings.BULK_LOCK_RETRIES + 1),
        wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
        before_sleep=smaller,
        reraise=True,
    )
    return retrying(_chunk, run, operation)


def _chunk(run: BulkRun, operation) -> _Chunk | None:
    if isinstance(operation, CsvOperation):
        first = int(run.checkpoint or 0) + 1
        if first > (run.input_rows or 0):
            return None
        last = min(first + run.chunk_size - 1, run.input_rows)
        return _commit(run, str(last), last - first + 1, lambda: operation.apply_lines(
            run.input_table, first, last, run.plan, dry_run=run.dry_run))
    if isinstance(operation, SetBasedOperation):
        return _set_based_chunk(run, operation)
    raise TypeError(f"bulk operation {operation.name!r} has no chunk shape")


def _sortable_pk(model) -> Any:
    """The primary key as an aggregate can take its maximum: PostgreSQL has no max(uuid), and
    a UUID's text sorts as its bytes do (fixed-width lower-case hex)."""
    if isinstance(model._meta.pk, UUIDField) and connection.vendor == "postgresql":
        return Cast("pk", output_field=CharField())
    return F("pk")


def _set_based_chunk(run: BulkRun, operation: SetBasedOperation) -> _Chunk | None:
    scope = operation.scope(run.plan)
    model = scope.model
    pk_field = model._meta.pk
    after = pk_field.to_python(run.checkpoint) if run.checkpoint else None
    rest = scope.filter(pk__gt=after) if after is not None else scope
    # The chunk's upper key: the last of the next `chunk_size` keys, read from the primary
    # key's index (keyset: where the last chunk ended, never an OFFSET from the start). The
    # aggregate reads the sliced keys as a subquery (`SELECT count, max FROM (… LIMIT n)`):
    # `pk IN (… LIMIT n)` had PostgreSQL hash-join the keys against a scan of the whole
    # table, every chunk.
    keys = rest.order_by("pk")[: run.chunk_size]
    bounds = keys.aggregate(rows=Count("pk"), last=Max(_sortable_pk(model)))
    if not bounds["rows"]:
        return None
    last = pk_field.to_python(bounds["last"])
    window = rest.filter(pk__lte=last)
    return _commit(run, str(last), bounds["rows"], lambda: (
        operation.would_change(window, run.plan) if run.dry_run
        else operation.apply(window, run.plan)))


def _lock(run: BulkRun) -> BulkRun:
    return BulkRun.objects.select_for_update().get(pk=run.pk)


def _set_lock_timeout(seconds: float) -> None:
    if connection.vendor == "postgresql" and seconds > 0:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)",
                           [f"{max(int(seconds * 1000), 1)}ms"])


def _commit(run: BulkRun, last_key: str, rows: int, write: Callable[[], int]) -> _Chunk:
    """The chunk's transaction: lock the run and check nobody moved it, write, checkpoint."""
    started = time.monotonic()
    stop = None
    with transaction.atomic():
        locked = _lock(run)
        # (Another job: the run was resumed with a new one after this one was given up.)
        if locked.status != BulkRunStatus.RUNNING or locked.checkpoint != run.checkpoint \
                or locked.job_id != run.job_id:
            logger.warning("bulk run moved by another delivery, stopping run_id=%s "
                           "expected=%r found=%r status=%s", run.pk, run.checkpoint,
                           locked.checkpoint, locked.status)
            stop = {**_outcome(locked), "superseded": True}
        elif locked.requested:
            stop = _stopped(locked)  # (written here, so raised only after the commit)
        else:
            _set_lock_timeout(run.lock_timeout_seconds)
            changed = write()
            now = time.monotonic()
            # The run in memory moves only once the chunk's last write is done: a write that
            # fails (the job's row locked past the lock timeout) rolls the chunk back, and its
            # retry must start from the checkpoint that is still committed.
            moved = {"checkpoint": last_key, "rows_done": run.rows_done + rows,
                     "rows_changed": run.rows_changed + changed,
                     "chunks_done": run.chunks_done + 1,
                     "elapsed_seconds": run.elapsed_seconds + now - getattr(run, "mark", started),
                     "chunk_size": _next_chunk_size(run, rows, now - started),
                     "updated_at": timezone.now()}
            BulkRun.objects.filter(pk=run.pk).update(**moved)
            lifecycle.job_progress(
                job_id=run.job_id, done=moved["rows_done"],
                total=None if run.rows_matched is None else max(run.rows_matched,
                                                                moved["rows_done"]))
            for name, value in moved.items():
                setattr(run, name, value)
            run.mark = now
            count_chunk_on_commit(run.operation, rows, changed)
    if stop is not None:
        raise _Stop(stop)
    return _Chunk(rows=rows, changed=changed)


def _next_chunk_size(run: BulkRun, rows: int, seconds: float) -> int:
    """Aim the next chunk at `target_chunk_seconds` (GitLab's batched migrations tune batch
    size to a target duration the same way): the rate just seen times the target, moved at
    most x2 or /2 per chunk so one odd chunk cannot swing it, within the configured bounds."""
    size = run.chunk_size
    if not run.adaptive or rows < size:  # the last, short chunk says nothing about the rate
        return size
    ideal = rows * run.target_chunk_seconds / seconds if seconds > 0 else size * 2
    bounded = min(max(ideal, size / 2), size * 2)
    return int(min(max(bounded, settings.BULK_MIN_CHUNK_SIZE), settings.BULK_MAX_CHUNK_SIZE))

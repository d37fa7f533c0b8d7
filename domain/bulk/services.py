"""Writes that start and steer bulk runs: start (JSON args or CSV rows), pause, resume, cancel.

What a worker does with a run is in runner.py. Every write here is one transaction: a run
that is refused (bad args, an invalid CSV row, its rows held by another run) leaves nothing
behind, and an accepted run is stored with its job, which the outbox hands to the broker
after the commit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from domain.access.models import ApiKey
from domain.bulk import inputs
from domain.bulk.kinds import BULK_RUN
from domain.bulk.models import HOLDING_STATUSES, BulkRequest, BulkRun, BulkRunStatus
from domain.bulk.registry import BulkOperation, get_bulk_operation
from domain.common.errors import Conflict, ValidationFailed
from domain.jobs.models import TERMINAL_JOB_STATUSES, JobStatus
from domain.jobs.services import job_build, job_cancel, jobs_add

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Throttle:
    """How a run paces itself. Each field defaults to its BULK_* setting."""

    chunk_size: int | None = None
    adaptive: bool | None = None
    target_chunk_seconds: float | None = None
    pause_seconds: float | None = None
    lock_timeout_seconds: float | None = None


def _operation_for(name: str, *, args: Any, csv: bool) -> BulkOperation:
    operation = get_bulk_operation(name)
    # The input's shape first: a CSV sent to an operation taking args is told so, not that
    # its (absent) args miss fields.
    if operation.accepts_csv and not csv:
        raise ValidationFailed(
            f"Bulk operation {name!r} takes its rows as CSV: send them with "
            f"Content-Type: text/csv and ?operation={name} (columns "
            f"{','.join(operation.header)}).", code="csv_required",
            details={"operation": name, "columns": list(operation.header)})
    if csv and not operation.accepts_csv:
        raise ValidationFailed(f"Bulk operation {name!r} takes no CSV.", code="csv_not_accepted",
                               details={"operation": name})
    operation.validate_args(args)
    return operation


@dataclass(frozen=True)
class StartResult:
    run: BulkRun
    created: bool  # False: a replay of an earlier request with the same Idempotency-Key


def bulk_run_start(**request: Any) -> BulkRun:
    """`bulk_run_request` for callers that need only the run (the CLI, tests)."""
    return bulk_run_request(**request).run


def _request_hash(operation: str, args: Any, dry_run: bool, throttle: Throttle,
                  body_digest: str = "") -> str:
    canonical = json.dumps([operation, args, dry_run, asdict(throttle), body_digest],
                           sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def bulk_run_request(*, operation: str, args: Any, dry_run: bool = False,
                     throttle: Throttle | None = None, csv_stream: Any = None,
                     api_key: ApiKey | None = None, idempotency_key: str | None = None,
                     correlation_id: str = "") -> StartResult:
    """Store a run and its job (after commit, the broker has the job).

    A real run holds its target until it ends: a second one on the same target is refused
    with 409 `bulk_target_busy`, naming the run that holds it. A dry run holds nothing.

    With an Idempotency-Key, the same key from the same API key with the same request (a
    CSV's body included) answers the first run as it is now, whether it is still running or
    long finished, instead of starting another (a retried reprice must not apply twice); the
    same key with another request is 409 `idempotency_key_reused`.
    """
    args = {} if args is None else args
    op = _operation_for(operation, args=args, csv=csv_stream is not None)
    throttle = throttle or Throttle()
    body = inputs.CsvBody(csv_stream) if csv_stream is not None else None
    if idempotency_key:
        earlier = _idempotent(api_key, idempotency_key)
        if earlier is not None:
            return _replayed(earlier, _request_hash(op.name, args, dry_run, throttle,
                                                    body.drain() if body else ""))
    plan = op.plan(args)
    run = BulkRun(
        operation=op.name, args=args, plan=plan, dry_run=dry_run,
        target=None if dry_run else op.target(plan),
        chunk_size=throttle.chunk_size or settings.BULK_CHUNK_SIZE,
        adaptive=settings.BULK_ADAPTIVE if throttle.adaptive is None else throttle.adaptive,
        target_chunk_seconds=_given(throttle.target_chunk_seconds,
                                    settings.BULK_TARGET_CHUNK_SECONDS),
        pause_seconds=_given(throttle.pause_seconds, settings.BULK_PAUSE_SECONDS),
        lock_timeout_seconds=_given(throttle.lock_timeout_seconds,
                                    settings.BULK_LOCK_TIMEOUT_SECONDS),
        api_key=api_key, idempotency_key=idempotency_key, correlation_id=correlation_id,
        request_hash=_request_hash(op.name, args, dry_run, throttle))
    try:
        with transaction.atomic():
            _hold(run, lambda: run.save(force_insert=True))
            if body is not None:
                inputs.input_load(run, op, body)
                run.request_hash = _request_hash(op.name, args, dry_run, throttle,
                                                 body.digest.hexdigest())
            job = job_build(kind=BULK_RUN.name, params={"run_id": str(run.pk)},
                            created_at=timezone.now(), api_key=api_key,
                            correlation_id=correlation_id)
            jobs_add(jobs=[job])
            run.job = job
            run.save(update_fields=["job", "input_table", "input_rows", "request_hash"])
    except IntegrityError:
        # Two requests with one key at the same instant: the unique constraint decided.
        earlier = _idempotent(api_key, idempotency_key) if idempotency_key else None
        if earlier is None:
            raise
        return _replayed(earlier, _request_hash(op.name, args, dry_run, throttle,
                                                body.drain() if body else ""))
    logger.info("bulk run queued run_id=%s operation=%s dry_run=%s target=%s", run.pk,
                run.operation, run.dry_run, run.target)
    return StartResult(run=run, created=True)


def _idempotent(api_key: ApiKey | None, key: str) -> BulkRun | None:
    return BulkRun.objects.filter(api_key=api_key, idempotency_key=key).first()


def _replayed(earlier: BulkRun, request_hash: str) -> StartResult:
    if earlier.request_hash != request_hash:
        raise Conflict("This Idempotency-Key was already used with a different request.",
                       code="idempotency_key_reused", details={"run": str(earlier.pk)})
    return StartResult(run=earlier, created=False)


def _given(value: float | None, default: float) -> float:
    return default if value is None else value


def _hold(run: BulkRun, write) -> None:
    """Make a write that puts the run in a holding status; if another run holds the target,
    refuse with 409 naming it (the partial unique constraint decides, so two requests at the
    same instant cannot both get in)."""
    try:
        with transaction.atomic():
            write()
    except IntegrityError as exc:
        if run.idempotency_key and BulkRun.objects.filter(
                api_key=run.api_key, idempotency_key=run.idempotency_key).exclude(
                pk=run.pk).exists():
            # A replay that raced its first request: the caller answers the first run. (A
            # resumed run finds only itself under its key: that is no replay.)
            raise
        holder = _holder(run)
        if holder is not None and bulk_run_settle(run=holder).status not in HOLDING_STATUSES:
            with transaction.atomic():  # the holder's job had ended: it held nothing
                write()
            return
        holder = _holder(run)
        if holder is None:
            raise
        raise Conflict(
            f"Another bulk run holds {run.target!r} ({holder.operation}, {holder.status}); "
            "runs on the same rows never interleave. Wait for it to end, or cancel it.",
            code="bulk_target_busy",
            details={"target": run.target, "run": str(holder.pk),
                     "operation": holder.operation, "status": holder.status}) from exc


def _holder(run: BulkRun) -> BulkRun | None:
    return (BulkRun.objects.select_related("job")
            .filter(target=run.target, status__in=HOLDING_STATUSES).exclude(pk=run.pk).first())


# --- A run whose job ended without it ---------------------------------------------------------

def bulk_run_settle(*, run: BulkRun) -> BulkRun:
    """A queued or running run whose job has ended without ending it: the job went dead
    outside the runner (the orphan rescue gives up on a job whose worker died on every
    attempt) or was cancelled through /api/v1/jobs. The run then ends too (`failed` with the
    job's error, or `cancelled`), so it does not hold its target for ever; a failed run can be
    resumed. Checked whenever a run is read or steered, and before a start is refused as busy."""
    job = run.job
    if run.status not in (BulkRunStatus.QUEUED, BulkRunStatus.RUNNING) or job is None \
            or job.status not in TERMINAL_JOB_STATUSES:
        return run
    # (A job that succeeded with its run still open has not finished it either: resumable.)
    # (A cancel that was on its way when the job ended is honoured as one.)
    failed = job.status != JobStatus.CANCELLED and run.requested != BulkRequest.CANCEL
    now = timezone.now()
    fields = {"status": BulkRunStatus.FAILED if failed else BulkRunStatus.CANCELLED,
              "requested": BulkRequest.NONE, "finished_at": now, "updated_at": now}
    if failed:
        fields["last_error"] = {"code": (job.error or {}).get("type", "job_ended"),
                                "message": f"its job ended ({job.status}) before the run: "
                                + (job.error or {}).get("message", "no error recorded"),
                                "details": {"job": str(job.pk)}}
    with transaction.atomic():
        settled = BulkRun.objects.filter(pk=run.pk, job=job,
                                         status__in=(BulkRunStatus.QUEUED,
                                                     BulkRunStatus.RUNNING)).update(**fields)
        run.refresh_from_db()
        if settled and run.status == BulkRunStatus.CANCELLED:
            inputs.input_drop(run)
            run.save(update_fields=["input_table"])
    if settled:
        logger.warning("bulk run ended with its job run_id=%s job_id=%s status=%s", run.pk,
                       job.pk, run.status)
    return run


# --- Steering ---------------------------------------------------------------------------------

def _locked(run_id) -> BulkRun:
    bulk_run_settle(run=BulkRun.objects.select_related("job").get(pk=run_id))
    return BulkRun.objects.select_for_update().get(pk=run_id)


def _refuse(run: BulkRun, action: str, allowed: str) -> Conflict:
    return Conflict(f"A {run.status} bulk run cannot be {action}; only {allowed} ones.",
                    code=f"bulk_run_not_{action.replace(' ', '_')}",
                    details={"status": run.status})


def _job_cancelled(run: BulkRun) -> bool:
    """Cancel the run's job if no worker has it now (not yet taken, waiting to retry, or
    handed back between time slices); whether it was. Then the request takes effect at once:
    the claim refuses a cancelled job, so no chunk can start."""
    if run.job is None:
        return False
    try:
        job_cancel(job=run.job)
    except Conflict:  # a worker has it: the run stops at its next chunk boundary
        return False
    return True


def bulk_run_pause(*, run: BulkRun) -> BulkRun:
    """Pause at the next chunk boundary (at once if no worker has it). Committed chunks stay
    committed; `resume` continues from the checkpoint, on any worker, after any restart."""
    with transaction.atomic():
        run = _locked(run.pk)
        if run.status == BulkRunStatus.PAUSED and not run.requested:
            return run
        if run.status not in (BulkRunStatus.QUEUED, BulkRunStatus.RUNNING):
            raise _refuse(run, "paused", "queued or running")
        if run.requested == BulkRequest.CANCEL:
            raise Conflict("This run is being cancelled.", code="bulk_run_not_paused",
                           details={"status": run.status, "requested": run.requested})
        run.updated_at = timezone.now()
        if _job_cancelled(run):
            run.status, run.requested = BulkRunStatus.PAUSED, BulkRequest.NONE
        else:
            run.requested = BulkRequest.PAUSE
        run.save(update_fields=["status", "requested", "updated_at"])
    return run


def bulk_run_resume(*, run: BulkRun) -> BulkRun:
    """A paused run (or a failed one, once its cause is fixed) continues from its checkpoint
    with a new job. A failed run takes its target back, so this is 409 if another run has
    taken it meanwhile. A pause still waiting for its chunk boundary is simply withdrawn."""
    with transaction.atomic():
        run = _locked(run.pk)
        if run.requested == BulkRequest.PAUSE:
            run.requested = BulkRequest.NONE
            run.updated_at = timezone.now()
            run.save(update_fields=["requested", "updated_at"])
            return run
        if run.status not in (BulkRunStatus.PAUSED, BulkRunStatus.FAILED):
            raise _refuse(run, "resumed", "paused or failed")
        if get_bulk_operation(run.operation).accepts_csv and not run.input_table:
            raise Conflict("This run's CSV rows are gone; start a new run with them.",
                           code="bulk_run_not_resumed", details={"status": run.status})
        run.status = BulkRunStatus.QUEUED
        run.finished_at = None
        run.updated_at = timezone.now()
        _hold(run, lambda: run.save(update_fields=["status", "finished_at", "updated_at"]))
        job = job_build(kind=BULK_RUN.name, params={"run_id": str(run.pk)},
                        created_at=run.updated_at, api_key=run.api_key,
                        correlation_id=run.correlation_id)
        jobs_add(jobs=[job])
        run.job = job
        run.save(update_fields=["job"])
    return run


def bulk_run_cancel(*, run: BulkRun) -> BulkRun:
    """Cancel at the next chunk boundary (at once if it is paused, failed, or no worker has
    it).
    Committed chunks stay committed: a bulk run is not a transaction, and the run says how
    far it got (`rows_done`, `checkpoint`)."""
    with transaction.atomic():
        run = _locked(run.pk)
        if run.status == BulkRunStatus.CANCELLED:
            return run
        if run.status not in (BulkRunStatus.QUEUED, BulkRunStatus.RUNNING,
                              BulkRunStatus.PAUSED, BulkRunStatus.FAILED):
            raise _refuse(run, "cancelled", "queued, running, paused or failed")
        now = timezone.now()
        run.updated_at = now
        # A failed run cancelled is one that will not be resumed: it ends for good and a CSV
        # run's input table goes with it.
        if run.status in (BulkRunStatus.PAUSED, BulkRunStatus.FAILED) or (
                run.status in (BulkRunStatus.QUEUED, BulkRunStatus.RUNNING)
                and _job_cancelled(run)):
            run.status, run.requested, run.finished_at = (BulkRunStatus.CANCELLED,
                                                          BulkRequest.NONE, now)
            inputs.input_drop(run)
        else:
            run.requested = BulkRequest.CANCEL
        run.save(update_fields=["status", "requested", "finished_at", "updated_at",
                                "input_table"])
    return run

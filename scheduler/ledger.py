"""The run ledger: every due slot of every schedule is at most one row, written before the
task body runs.

Beat stamps each message with its slot (`scheduler/beat.py`). The worker's first write is the
ledger row under the unique (schedule, slot) constraint: a second Beat's message, a message
the broker delivered twice, or a retry of the same slot finds the row and does nothing. Then
the overlap lock (`scheduler/locks.py`): a slot that comes due while the previous run still
works is recorded `skipped: overlap`. Then the body, and the outcome, duration, worker and
error on the row.

A message without a slot (the admin's "Run selected tasks", Flower, a shell) is an operator's
run-now: its slot is the second it started, so two clicks in one second are one run.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from celery import current_task
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from domain.common.pruning import PruneReport, prune_table
from scheduler.locks import overlap_lock
from scheduler.models import RunOutcome, RunTrigger, ScheduleRun, SkipReason
from scheduler.schedules import declared

logger = logging.getLogger(__name__)

# Message headers Beat (and the API's run-now) set; Celery hands custom headers to the task
# as attributes of its request.
SLOT_HEADER = "conveyor_slot"
TRIGGER_HEADER = "conveyor_trigger"
ERROR_LIMIT = 4000  # characters of an error kept on the row


class SkipSlot(Exception):
    """Raised by a periodic task's body: the slot is recorded `skipped` with `reason`."""

    def __init__(self, reason: str, detail: str = "", result: Any = None):
        super().__init__(detail or reason)
        self.reason, self.detail, self.result = reason, detail, result


def slot_headers(slot: dt.datetime, trigger: str = RunTrigger.BEAT) -> dict[str, str]:
    return {SLOT_HEADER: slot.astimezone(dt.UTC).isoformat(), TRIGGER_HEADER: str(trigger)}


def manual_slot(now: dt.datetime | None = None) -> dt.datetime:
    return (now or timezone.now()).replace(microsecond=0)


def request_header(request: Any, key: str) -> Any:
    """A custom message header from a task's request: an attribute of the request in a worker
    (Celery merges custom headers into it), in `request.headers` for an eager `apply`."""
    value = getattr(request, key, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(key)
    return value


def request_slot(request: Any) -> tuple[dt.datetime | None, str]:
    """The slot and trigger a message carries; (None, "manual") for a message without a
    (readable) slot."""
    raw = request_header(request, SLOT_HEADER)
    if raw:
        try:
            slot = dt.datetime.fromisoformat(raw)
        except (TypeError, ValueError):
            logger.warning("ignored a malformed slot header value=%r", raw)
        else:
            return slot, request_header(request, TRIGGER_HEADER) or RunTrigger.BEAT
    return None, RunTrigger.MANUAL


def _insert(**fields: Any) -> ScheduleRun | None:
    """The new ledger row; None if its (schedule, slot, trigger) has one already."""
    try:
        with transaction.atomic():
            return ScheduleRun.objects.create(**fields)
    except IntegrityError:
        return None


def ledger_claim(schedule: str, *, slot: dt.datetime, trigger: str, lock_ttl: int,
                 worker: str = "", task_id: str = "") -> ScheduleRun | None:
    """The slot's row, new and `running`; None if the slot already has one (of the same
    trigger: Beat's, or an operator's run-now)."""
    now = timezone.now()
    # A worker killed mid-run (kill -9, OOM) left its row running; once its lock's TTL has
    # passed nothing holds the schedule any more, and the row says so.
    ScheduleRun.objects.filter(
        schedule=schedule, outcome=RunOutcome.RUNNING,
        started_at__lt=now - dt.timedelta(seconds=lock_ttl),
    ).update(outcome=RunOutcome.FAILED, finished_at=now,
             error="The worker was lost: the run never finished and its lock expired.")
    run = _insert(schedule=schedule, slot=slot, trigger=trigger, started_at=now,
                  worker=worker[:255], task_id=task_id[:255])
    if run is not None:
        return run
    # A slot recorded skipped from outside a run (a late second Beat's `missed`, an expired
    # duplicate) while this message was on its way: the message that did arrive runs it.
    taken = ScheduleRun.objects.filter(
        schedule=schedule, slot=slot, trigger=trigger, outcome=RunOutcome.SKIPPED,
        reason__in=(SkipReason.MISSED, SkipReason.EXPIRED),
    ).update(outcome=RunOutcome.RUNNING, reason="", started_at=now,
             finished_at=None, duration_ms=None, error="", worker=worker[:255],
             task_id=task_id[:255])
    return ScheduleRun.objects.get(schedule=schedule, slot=slot, trigger=trigger) \
        if taken else None


def ledger_finish(run: ScheduleRun, *, outcome: str, reason: str = "", result: Any = None,
                  error: str = "") -> None:
    finished = timezone.now()
    run.outcome, run.reason, run.finished_at = outcome, reason, finished
    run.duration_ms = max(0, int((finished - run.started_at).total_seconds() * 1000))
    run.result, run.error = _storable(result), error[:ERROR_LIMIT]
    run.save(update_fields=["outcome", "reason", "finished_at", "duration_ms", "result",
                            "error"])


def ledger_record_skip(schedule: str, *, slot: dt.datetime, reason: str,
                       trigger: str = RunTrigger.BEAT, detail: str = "") -> bool:
    """A slot that will not run, recorded as such (unless it already has a row)."""
    now = timezone.now()
    return _insert(schedule=schedule, slot=slot, trigger=trigger, outcome=RunOutcome.SKIPPED,
                   reason=reason, started_at=now, finished_at=now, duration_ms=0,
                   error=detail[:ERROR_LIMIT]) is not None


def scheduled(name: str, *, lock_ttl: int | None = None) -> Callable:
    """Decorate a periodic task's function: the ledger row, the overlap lock, the outcome.

    `name` is the schedule's (scheduler/schedules.py); its lock TTL comes from there unless
    given here.
    """
    ttl = lock_ttl if lock_ttl is not None else declared(name).lock_ttl

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            request = current_task.request if current_task else None
            slot, trigger = request_slot(request)
            slot = slot or manual_slot()
            run = ledger_claim(name, slot=slot, trigger=trigger, lock_ttl=ttl,
                               worker=getattr(request, "hostname", None) or "",
                               task_id=getattr(request, "id", None) or "")
            if run is None:
                logger.info("skipped, the slot already has a run schedule=%s slot=%s", name,
                            slot.isoformat())
                return {"skipped": "duplicate", "slot": slot.isoformat()}
            with overlap_lock(name, ttl=ttl) as state:
                if state != "held":
                    reason = (SkipReason.OVERLAP if state == "locked"
                              else SkipReason.LOCK_UNAVAILABLE)
                    ledger_finish(run, outcome=RunOutcome.SKIPPED, reason=reason)
                    return {"skipped": str(reason), "slot": slot.isoformat()}
                try:
                    result = fn(*args, **kwargs)
                except SkipSlot as skip:
                    ledger_finish(run, outcome=RunOutcome.SKIPPED, reason=skip.reason,
                                  result=skip.result, error=skip.detail)
                    return {"skipped": skip.reason, "slot": slot.isoformat(),
                            "detail": skip.detail}
                except BaseException as exc:  # SoftTimeLimitExceeded is not an Exception
                    ledger_finish(run, outcome=RunOutcome.FAILED,
                                  error=f"{type(exc).__name__}: {exc}")
                    raise
                ledger_finish(run, outcome=RunOutcome.SUCCEEDED, result=result)
                logger.info("periodic run done schedule=%s slot=%s ms=%d", name,
                            slot.isoformat(), run.duration_ms)
                return result

        return wrapper

    return decorator


def _storable(result: Any) -> Any:
    if result is None:
        return None
    try:
        return json.loads(json.dumps(result, cls=DjangoJSONEncoder))
    except (TypeError, ValueError):
        return {"repr": repr(result)[:ERROR_LIMIT]}


def ledger_prune(*, cutoff: dt.datetime, deadline: float | None = None) -> PruneReport:
    """Delete ledger rows of slots before `cutoff` (RETENTION_SCHEDULE_RUNS_DAYS), in batches
    (domain/common/pruning.py); a run still `running` stays until it ends or is found lost."""
    return prune_table(model=ScheduleRun,
                       where=Q(slot__lt=cutoff) & ~Q(outcome=RunOutcome.RUNNING),
                       deadline=deadline)

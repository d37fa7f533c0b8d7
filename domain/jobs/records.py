"""How a job's failure is written down: its attempt rows and its last error."""

from __future__ import annotations

import traceback as tb
from datetime import datetime

from domain.jobs.models import Job, JobAttempt


def format_traceback(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    return "".join(tb.format_exception(type(exc), exc, exc.__traceback__))[-20000:]


def error_summary(exc: BaseException) -> dict:
    """What `Job.error` holds: the class and the message, bounded."""
    return {"type": type(exc).__name__, "message": str(exc)[:2000]}


def attempt_row(job: Job, outcome: str, now: datetime,
                exc: BaseException | None = None) -> JobAttempt:
    """The attempt the job just finished (its run and number as claimed), not yet saved."""
    return JobAttempt(
        job=job,
        run=job.replays,
        number=job.attempts,
        started_at=job.started_at or now,
        finished_at=now,
        outcome=outcome,
        error_type=type(exc).__name__ if exc else "",
        error_message=str(exc)[:2000] if exc else "",
        traceback=format_traceback(exc),
        worker=job.worker,
    )

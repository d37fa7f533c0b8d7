"""One correlation id follows a request into every event, job, task and log line."""

import re
import uuid
from contextvars import ContextVar

HEADER = "X-Correlation-ID"
# The Celery message header that carries it to the worker. Not `correlation_id`: Celery sets
# the request's `correlation_id` from the message property of that name (the task id), over
# any header so named, and drops the header from those a retry sends on.
MESSAGE_HEADER = "conveyor_correlation_id"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_current: ContextVar[str] = ContextVar("correlation_id", default="-")


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def clean_correlation_id(value: str | None) -> str:
    """Accept a caller's id only if it is short and plain, so it is safe in logs and headers."""
    if value and _VALID.match(value):
        return value
    return new_correlation_id()


def get_correlation_id() -> str:
    return _current.get()


def set_correlation_id(value: str):
    return _current.set(value)


def reset_correlation_id(token) -> None:
    _current.reset(token)

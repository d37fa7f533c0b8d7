"""Log records: the fields every line carries, and the two ways a line is written.

`LOG_FORMAT` (config/settings) picks the formatter: `text`, key=value lines for a terminal
(the local and test default), or `json`, one JSON object per line for a log pipeline (the
production default). Both print the correlation id; a JSON line also names, where known, the
job, event, task, queue and worker the record was written for. Those come from a context that
the code doing the work sets (`log_context`): the worker around each task and each job of a
micro-batch (workers/signals.py, workers/base.py), the API where it publishes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

from domain.common.correlation import get_correlation_id

# Credentials that must never reach a log line, even if some code logs a header or a payload:
# bearer tokens, our API keys (cvk_...) and Standard Webhooks secrets (whsec_...).
_SECRETS = re.compile(r"(Bearer\s+)\S+|cvk_[A-Za-z0-9_\-]+|whsec_[A-Za-z0-9+/=_\-]+",
                      re.IGNORECASE)

# What a record is about, beside its correlation id, in the order a JSON line lists them.
CONTEXT_FIELDS = ("job_id", "event_id", "task", "queue", "worker")

# Each bind sets a new mapping; the default, read-only, is never changed in place.
_context: ContextVar[Mapping[str, str]] = ContextVar("log_context",
                                                     default=MappingProxyType({}))
# Fields true for the whole process (a worker's name), under whatever the context says.
_process_fields: dict[str, str] = {}


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "[REDACTED]", text)


def bind_log_context(**fields: Any) -> Token:
    """Add fields (of CONTEXT_FIELDS) to the records written from here on, in this thread or
    task, until `reset_log_context(token)`. Empty values leave a field as it was."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"not log context fields: {sorted(unknown)}")
    current = _context.get()
    return _context.set({**current, **{k: str(v) for k, v in fields.items()
                                       if v is not None and v != ""}})


def reset_log_context(token: Token) -> None:
    _context.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = bind_log_context(**fields)
    try:
        yield
    finally:
        reset_log_context(token)


def set_process_log_fields(**fields: Any) -> None:
    """Fields every record of this process carries unless its context says otherwise (a
    worker's name, set once when it starts)."""
    _process_fields.update({k: str(v) for k, v in fields.items() if k in CONTEXT_FIELDS and v})


class CorrelationIdFilter(logging.Filter):
    """Puts the current correlation id, and the log context's fields, on every record
    (formatters print them). A field given in `extra=` is kept as given."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = get_correlation_id()
        for fields in (_context.get(), _process_fields):
            for name, value in fields.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


class RedactSecretsFilter(logging.Filter):
    """Masks credentials in the rendered message (defence in depth: nothing logs them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


# The attributes every LogRecord has; anything else on a record came from `extra=` (or a
# filter) and goes into the JSON line as a field of its own.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Celery passes its messages' formatting arguments again as `extra={"data": …}` (for custom
# handlers): the same values the message already shows, and for a failure the whole traceback
# a second time. Left out.
_LEFT_OUT = frozenset({"data", "correlation_id", *CONTEXT_FIELDS})


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (orjson escapes every newline in a message or a
    traceback): `time` (UTC, ISO 8601, milliseconds), `level`, `logger`, `message`,
    `correlation_id`, the context's fields where known, fields given with `extra=`, and
    `exception` (the traceback's text) / `stack` when the record has them.

    The standard library's logging with a Formatter of its own rather than structlog: the
    LOGGING dict, the filters and Celery's own loggers stay as they are, and one class is all
    that JSON lines need. orjson (already pinned for the API's renderer) writes UTF-8 as it is.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation_id = getattr(record, "correlation_id", None)
        if correlation_id and correlation_id != "-":
            line["correlation_id"] = correlation_id
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value:
                line[name] = value
        for name, value in record.__dict__.items():
            if (name not in _RECORD_ATTRIBUTES and name not in _LEFT_OUT
                    and name not in line and not name.startswith("_")):
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _dumps(line)


# JSON lets these stand unescaped in a string, but many readers (Python's splitlines among them)
# end a line at each: escaped, so a record stays one line whoever splits the stream.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _dumps(line: dict[str, Any]) -> str:
    try:
        text = orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        # What orjson refuses even through `default` (an integer past 64 bits, a dict keyed
        # by tuples): the standard library writes it, as text where it must.
        text = json.dumps(line, default=str, ensure_ascii=False, skipkeys=True)
    return text.translate(_LINE_BREAKS)

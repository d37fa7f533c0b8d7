"""Event types and job kinds, registered in code.

An event type names its payload's JSON schema and the handlers it fans out to; each handler
makes one job of a registered kind, with JSON params computed from the payload. Only names and
JSON reach the database: the outbox never stores callables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from domain.common.errors import ValidationFailed
from workers.retry import RetryPolicy


def _compile(schema: dict) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    # Draft 2020-12 treats "format" as a note unless a checker is given; enforce it (uuid,
    # date-time, email...) so a schema means what it says.
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(validator: Draft202012Validator, instance: Any) -> list[dict[str, str]]:
    return [
        {"path": "/".join(str(p) for p in error.absolute_path) or "/", "message": error.message}
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ][:20]


@dataclass(frozen=True)
class JobKind:
    name: str
    task_name: str
    description: str
    params_schema: dict
    retry: RetryPolicy
    # Micro-batching: how many jobs of this kind one broker message may carry. Only for work
    # that is cheap and short (a batch shares one soft time limit); slow or external work
    # (webhooks, email) keeps 1, one message per job. See workers/base.py.
    batch_size: int = 1
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"job kind {self.name!r}: batch_size must be at least 1")
        object.__setattr__(self, "validator", _compile(self.params_schema))

    def validate_params(self, params: Any) -> None:
        errors = schema_errors(self.validator, params)
        if errors:
            raise ValidationFailed(f"params do not match the schema of job kind {self.name!r}.",
                                   code="invalid_params", details={"params": errors})


@dataclass(frozen=True)
class Handler:
    name: str
    kind: str
    params: Callable[[dict], dict]


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    schema: dict
    handlers: tuple[Handler, ...] = ()
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "validator", _compile(self.schema))

    def validate_payload(self, payload: Any) -> list[dict[str, str]]:
        return schema_errors(self.validator, payload)


_event_types: dict[str, EventType] = {}
_job_kinds: dict[str, JobKind] = {}


def register_job_kind(kind: JobKind) -> JobKind:
    if kind.name in _job_kinds and _job_kinds[kind.name] != kind:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    _job_kinds[kind.name] = kind
    return kind


def register_event_type(event_type: EventType) -> EventType:
    if event_type.name in _event_types and _event_types[event_type.name] != event_type:
        raise ValueError(f"event type {event_type.name!r} is already registered")
    for handler in event_type.handlers:
        if handler.kind not in _job_kinds:
            raise ValueError(f"handler {handler.name!r} uses unknown job kind {handler.kind!r}")
    _event_types[event_type.name] = event_type
    return event_type


def event_types() -> list[EventType]:
    return sorted(_event_types.values(), key=lambda t: t.name)


def job_kinds() -> list[JobKind]:
    return sorted(_job_kinds.values(), key=lambda k: k.name)


def get_event_type(name: str) -> EventType:
    try:
        return _event_types[name]
    except KeyError:
        raise ValidationFailed(
            f"Unknown event type {name!r}.",
            code="unknown_event_type",
            details={"type": name, "known": sorted(_event_types)},
        ) from None


def get_job_kind(name: str) -> JobKind:
    try:
        return _job_kinds[name]
    except KeyError:
        raise ValidationFailed(
            f"Unknown job kind {name!r}.",
            code="unknown_job_kind",
            details={"kind": name, "known": sorted(_job_kinds)},
        ) from None


def job_kind_for_task(task_name: str) -> JobKind | None:
    return next((k for k in _job_kinds.values() if k.task_name == task_name), None)

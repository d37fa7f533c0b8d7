"""Event types, registered in code.

An event type names its payload's JSON schema and the handlers it fans out to; each handler
makes one job of a registered kind (domain/jobs/registry.py), with JSON params computed from
the payload. Only names and JSON reach the database: the outbox never stores callables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from domain.common.errors import ValidationFailed
from domain.common.schemas import compile_schema, schema_errors
from domain.jobs.registry import is_job_kind


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
    # A payload that passes the schema: shown in the README and GET /api/v1/event-types, and
    # checked against the schema when the type is registered, so the example cannot rot.
    example: dict | None = field(default=None, compare=False)
    # Whether clients may publish it; the server's own operational events are not (a client
    # must not be able to announce that someone's endpoint was disabled).
    publishable: bool = True
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "validator", compile_schema(self.schema))
        if self.example is not None and self.validate_payload(self.example):
            raise ValueError(f"event type {self.name!r}: its example does not match its schema: "
                             f"{self.validate_payload(self.example)}")

    def validate_payload(self, payload: Any) -> list[dict[str, str]]:
        return schema_errors(self.validator, payload)


_event_types: dict[str, EventType] = {}
# Handlers added at publish time by the apps above this one, for subscriptions made at run
# time rather than in code (a webhook endpoint subscribes to a type through the API): each
# answers the extra handlers an event of a type gets now. Plain calls, not signals: the
# publish asks, in its own transaction, and nothing happens behind its back.
_subscribers: list[Callable[[str], tuple[Handler, ...]]] = []


def register_subscriber(subscriber: Callable[[str], tuple[Handler, ...]]) -> None:
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def handlers_for(event_type: EventType) -> tuple[Handler, ...]:
    """The event type's handlers and, after them, those its subscribers add now."""
    extra = tuple(h for subscriber in _subscribers for h in subscriber(event_type.name))
    return event_type.handlers + extra if extra else event_type.handlers


def register_event_type(event_type: EventType) -> EventType:
    if event_type.name in _event_types and _event_types[event_type.name] != event_type:
        raise ValueError(f"event type {event_type.name!r} is already registered")
    for handler in event_type.handlers:
        if not is_job_kind(handler.kind):
            raise ValueError(f"handler {handler.name!r} uses unknown job kind {handler.kind!r}")
    _event_types[event_type.name] = event_type
    return event_type


def event_types(*, publishable: bool = False) -> list[EventType]:
    """Every registered type, by name; with `publishable`, those clients may publish."""
    return sorted((t for t in _event_types.values() if t.publishable or not publishable),
                  key=lambda t: t.name)


def get_event_type(name: str, *, publishable: bool = False) -> EventType:
    """The type of this name; with `publishable`, only one clients may publish."""
    found = _event_types.get(name)
    if found is None or (publishable and not found.publishable):
        raise ValidationFailed(
            f"Unknown event type {name!r}.",
            code="unknown_event_type",
            details={"type": name,
                     "known": [t.name for t in event_types(publishable=publishable)]},
        )
    return found

"""Job kinds, registered in code.

A kind names its work: the task that runs it (and so, by the task name's family, its queue),
its params' JSON schema, its retry policy and how many jobs of it one message may carry. Only
names and JSON reach the database: a job row never stores a callable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from domain.common.errors import ValidationFailed
from domain.common.schemas import compile_schema, schema_errors
from domain.jobs.retry import RetryPolicy


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
    # Whether clients may start it with POST /api/v1/jobs. Work a domain app starts itself
    # (a webhook delivery: its endpoint, message and signature are the app's to make) is not.
    triggerable: bool = True
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"job kind {self.name!r}: batch_size must be at least 1")
        object.__setattr__(self, "validator", compile_schema(self.params_schema))

    def validate_params(self, params: Any) -> None:
        errors = schema_errors(self.validator, params)
        if errors:
            raise ValidationFailed(f"params do not match the schema of job kind {self.name!r}.",
                                   code="invalid_params", details={"params": errors})


_job_kinds: dict[str, JobKind] = {}


def register_job_kind(kind: JobKind) -> JobKind:
    if kind.name in _job_kinds and _job_kinds[kind.name] != kind:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    _job_kinds[kind.name] = kind
    return kind


def job_kinds(*, triggerable: bool = False) -> list[JobKind]:
    """Every registered kind, by name; with `triggerable`, those clients may start."""
    return sorted((k for k in _job_kinds.values() if k.triggerable or not triggerable),
                  key=lambda k: k.name)


def is_job_kind(name: str) -> bool:
    return name in _job_kinds


def get_job_kind(name: str, *, triggerable: bool = False) -> JobKind:
    """The kind of this name; with `triggerable`, only one clients may start."""
    kind = _job_kinds.get(name)
    if kind is None or (triggerable and not kind.triggerable):
        raise ValidationFailed(
            f"Unknown job kind {name!r}.",
            code="unknown_job_kind",
            details={"kind": name,
                     "known": [k.name for k in job_kinds(triggerable=triggerable)]},
        )
    return kind

"""The built-in job kinds. A domain app registers its own beside its event types."""

from domain.jobs.registry import JobKind, register_job_kind
from domain.jobs.retry import TRANSIENT

CACHE_INVALIDATION = register_job_kind(
    JobKind(
        name="cache_invalidation",
        task_name="conveyor.cache.invalidate",
        description="Delete cache keys and bump namespace versions "
        "(drops every page of a listing).",
        params_schema={
            "type": "object",
            "properties": {
                "keys": {"type": "array", "items": {"type": "string", "minLength": 1,
                                                     "maxLength": 250}, "maxItems": 1000},
                "namespaces": {"type": "array", "items": {"type": "string", "minLength": 1,
                                                           "maxLength": 200}, "maxItems": 1000},
            },
            "additionalProperties": False,
            "anyOf": [
                {"required": ["keys"], "properties": {"keys": {"minItems": 1}}},
                {"required": ["namespaces"], "properties": {"namespaces": {"minItems": 1}}},
            ],
        },
        retry=TRANSIENT,
        # A few Redis commands per job: 100 finish well inside one soft time limit.
        batch_size=100,
    )
)

NOOP = register_job_kind(
    JobKind(
        name="noop",
        task_name="conveyor.demo.noop",
        description="Does trivial work; measures what the bookkeeping costs.",
        params_schema={"type": "object"},
        retry=TRANSIENT,
        batch_size=500,
    )
)

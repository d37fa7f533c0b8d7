"""The job kind that carries a bulk run (the run's rows, checkpoint and counters are the
run's; the job is its trip through the broker, its attempts and its lease)."""

from domain.jobs.registry import JobKind, register_job_kind
from domain.jobs.retry import TRANSIENT

BULK_RUN = register_job_kind(
    JobKind(
        name="bulk_run",
        task_name="conveyor.bulk.run",
        description="Run a bulk operation's chunks from its checkpoint "
        "(started with POST /api/v1/bulk-operations).",
        params_schema={
            "type": "object",
            "properties": {"run_id": {"type": "string", "format": "uuid"}},
            "required": ["run_id"],
            "additionalProperties": False,
        },
        # Lock conflicts are retried inside the attempt (runner.py); an attempt that fails
        # (the database went away, locks held past BULK_LOCK_RETRIES) retries from the
        # checkpoint, which is where a rescued job starts too.
        retry=TRANSIENT,
        triggerable=False,
    )
)

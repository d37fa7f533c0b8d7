"""A job alone on its message, for the suite only: the `bench.solo` event type, whose one
handler makes a job of the `bench.solo` kind, a no-op with `batch_size` 1 (every job travels
on a message of its own, job id = task id, as slow or external work does).

The product has no kind with `batch_size` 1 today; this one is registered by bench/apps.py,
which only bench/settings.py installs. Its task is named in the demo family, so it goes to the
`events` queue like the `noop` kind's (workers/queues.py) and the `all` worker consumes it.
"""

from dataclasses import replace

from domain.events.registry import EventType, Handler, register_event_type
from domain.jobs.kinds import NOOP
from domain.jobs.models import Job
from domain.jobs.registry import register_job_kind
from workers.base import job_task

# The noop kind's twin, alone on its message.
SOLO = register_job_kind(replace(
    NOOP, name="bench.solo", task_name="conveyor.demo.bench_solo",
    description="Benchmark only: a no-op job, one per message.", batch_size=1))


@job_task(kind=SOLO)
def solo(job: Job) -> dict:
    """Trivial work, like the noop kind's: the cost of a job is its bookkeeping."""
    return {"ok": True}


BENCH_SOLO = register_event_type(
    EventType(
        name="bench.solo",
        description="Benchmark only: one handler, one job of the bench.solo kind.",
        schema={"type": "object"},
        handlers=(Handler(name="bench.solo", kind=SOLO.name, params=lambda payload: {}),),
        example={"message": "hello"},
    )
)

"""A test-only job kind for the explain tests, imported by the test process (and so known to
the session's in-process worker) and by worker subprocesses (`celery worker -I
tests.workers.explain_jobs`).

Params: `sleep` (seconds, before anything else: a window in which the job is `running`),
`fail`: "transient" (retried, after an hour: a wait longer than the broker's countdown limit,
so it is kept in the job row and no message lingers after the test) or "permanent" (dead at
once).
"""

from __future__ import annotations

import time

from domain.common.errors import PermanentError, TransientError
from domain.jobs.models import Job
from domain.jobs.registry import JobKind, register_job_kind
from domain.jobs.retry import RetryPolicy
from workers.base import job_task

PROBE_POLICY = RetryPolicy.scheduled("explain_probe", [3600], jitter=0)
PROBE = register_job_kind(JobKind(
    name="explain_probe", task_name="conveyor.demo.explain_probe",  # the `events` queue
    description="explain tests: sleeps, fails on demand",
    params_schema={
        "type": "object",
        "properties": {"sleep": {"type": "number", "minimum": 0, "maximum": 60},
                       "fail": {"enum": ["transient", "permanent"]}},
        "additionalProperties": False,
    },
    retry=PROBE_POLICY))


@job_task(kind=PROBE)
def explain_probe(job: Job) -> dict:
    if job.params.get("sleep"):
        time.sleep(float(job.params["sleep"]))
    if job.params.get("fail") == "transient":
        raise TransientError("the other side is down (on purpose)")
    if job.params.get("fail") == "permanent":
        raise PermanentError("this input can never work (on purpose)")
    return {"ok": True}

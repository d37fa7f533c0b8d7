from domain.events.models import Job
from workers.base import job_task


@job_task(name="conveyor.demo.noop")
def noop(job: Job) -> dict:
    """Trivial work: the cost of a job is then all bookkeeping."""
    return {"ok": True}

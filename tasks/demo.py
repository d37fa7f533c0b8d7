from domain.jobs.kinds import NOOP
from domain.jobs.models import Job
from workers.base import job_task


@job_task(kind=NOOP)
def noop(job: Job) -> dict:
    """Trivial work: the cost of a job is then all bookkeeping."""
    return {"ok": True}

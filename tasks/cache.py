from domain.common.cache import cache_invalidate
from domain.events.models import Job
from workers.base import job_task


@job_task(name="conveyor.cache.invalidate")
def invalidate(job: Job) -> dict:
    """Drop cache keys and bump namespace versions named in the job's params."""
    return cache_invalidate(keys=job.params.get("keys"), namespaces=job.params.get("namespaces"))

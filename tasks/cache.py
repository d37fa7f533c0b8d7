from domain.common.cache import cache_invalidate
from domain.jobs.kinds import CACHE_INVALIDATION
from domain.jobs.models import Job
from workers.base import job_task


@job_task(kind=CACHE_INVALIDATION)
def invalidate(job: Job) -> dict:
    """Drop cache keys and bump namespace versions named in the job's params."""
    return cache_invalidate(keys=job.params.get("keys"), namespaces=job.params.get("namespaces"))

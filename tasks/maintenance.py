from celery import shared_task
from django.conf import settings

from domain.common.errors import Conflict
from domain.customers.services import customers_deactivate_inactive
from domain.jobs.outbox import outbox_relay
from domain.jobs.rescue import jobs_rescue_orphans
from domain.jobs.retry import NEVER
from scheduler.ledger import SkipReason, SkipSlot, scheduled
from scheduler.retention import retention_prune
from workers.base import ConveyorTask
from workers.health import queue_health_check

# Idempotent periodic work: the next slot is the retry, so the policy is NEVER. `scheduled`
# records each slot's run in the ledger and keeps runs of one schedule from overlapping.
# Each task's hard time limit is below its schedule's lock TTL (scheduler/schedules.py): the
# lock, and the ledger's "worker lost" verdict, trust the TTL as the longest a run can last.


@shared_task(name="conveyor.maintenance.relay_outbox", base=ConveyorTask, retry_policy=NEVER,
             soft_time_limit=90, time_limit=110)
@scheduled("outbox-relay")
def relay_outbox() -> dict:
    """Send jobs that are committed but not on the broker, due, or lost by the broker."""
    return {"sent": outbox_relay()}


@shared_task(name="conveyor.maintenance.rescue_orphans", base=ConveyorTask, retry_policy=NEVER,
             soft_time_limit=20, time_limit=25)
@scheduled("orphan-rescue")
def rescue_orphans() -> dict:
    """Requeue (or bury) jobs left `running` by a worker that vanished."""
    return jobs_rescue_orphans()


@shared_task(name="conveyor.maintenance.queue_health", base=ConveyorTask, retry_policy=NEVER,
             soft_time_limit=40, time_limit=50)
@scheduled("queue-health")
def queue_health() -> dict:
    """Queue depths, the oldest due job per kind, the workers per queue: logged and kept."""
    return queue_health_check()


@shared_task(name="conveyor.maintenance.deactivate_inactive_customers", base=ConveyorTask,
             retry_policy=NEVER, soft_time_limit=300, time_limit=360)
@scheduled("customers-deactivate-inactive")
def deactivate_inactive_customers() -> dict:
    """Start the nightly bulk run; the run itself is a bulk job with its own retries."""
    try:
        run = customers_deactivate_inactive()
    except Conflict as exc:  # last night's run (or an operator's) still holds the customers
        raise SkipSlot(SkipReason.BUSY, exc.message, result=exc.details) from exc
    return {"bulk_run": str(run.pk), "job": str(run.job_id), "args": run.args}


# Above the run's own budget (PRUNE_MAX_SECONDS, after which it stops between two batches): the
# limits only strike a run stuck inside one statement; its lock outlives both.
_PRUNE_SOFT_LIMIT = settings.PRUNE_MAX_SECONDS + 60


@shared_task(name="conveyor.maintenance.prune", base=ConveyorTask, retry_policy=NEVER,
             soft_time_limit=_PRUNE_SOFT_LIMIT, time_limit=_PRUNE_SOFT_LIMIT + 60)
@scheduled("retention-prune")
def prune() -> dict:
    """Delete what the retention settings no longer keep, in short batches; a run that
    stops at PRUNE_MAX_SECONDS is resumed by the next (scheduler/retention.py)."""
    return retention_prune()

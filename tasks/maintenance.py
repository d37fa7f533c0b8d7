from celery import shared_task

from domain.jobs.outbox import outbox_relay
from domain.jobs.rescue import jobs_rescue_orphans
from domain.jobs.retry import NEVER
from scheduler.ledger import scheduled
from workers.base import ConveyorTask

# Idempotent periodic work: the next slot is the retry, so the policy is NEVER. `scheduled`
# records each slot's run in the ledger and keeps runs of one schedule from overlapping.


@shared_task(name="conveyor.maintenance.relay_outbox", base=ConveyorTask, retry_policy=NEVER)
@scheduled("outbox-relay")
def relay_outbox() -> dict:
    """Send jobs that are committed but not on the broker, due, or lost by the broker."""
    return {"sent": outbox_relay()}


@shared_task(name="conveyor.maintenance.rescue_orphans", base=ConveyorTask, retry_policy=NEVER)
@scheduled("orphan-rescue")
def rescue_orphans() -> dict:
    """Requeue (or bury) jobs left `running` by a worker that vanished."""
    return jobs_rescue_orphans()

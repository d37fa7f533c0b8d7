from celery import shared_task

from domain.jobs.outbox import outbox_relay
from domain.jobs.rescue import jobs_rescue_orphans
from domain.jobs.retry import NEVER
from scheduler.locks import single_flight
from workers.base import ConveyorTask

# Idempotent periodic work: the next beat tick is the retry, so the policy is NEVER.


@shared_task(name="conveyor.maintenance.relay_outbox", base=ConveyorTask, retry_policy=NEVER)
@single_flight("relay_outbox", ttl=120)
def relay_outbox() -> dict:
    """Send jobs that are committed but not on the broker, due, or lost by the broker."""
    return {"sent": outbox_relay()}


@shared_task(name="conveyor.maintenance.rescue_orphans", base=ConveyorTask, retry_policy=NEVER)
@single_flight("rescue_orphans", ttl=30)
def rescue_orphans() -> dict:
    """Requeue (or bury) jobs left `running` by a worker that vanished."""
    return jobs_rescue_orphans()

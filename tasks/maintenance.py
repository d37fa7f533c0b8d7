from celery import shared_task

from domain.events.services import outbox_relay
from scheduler.locks import single_flight
from workers.base import ConveyorTask
from workers.retry import NEVER


@shared_task(name="conveyor.maintenance.relay_outbox", base=ConveyorTask, retry_policy=NEVER)
@single_flight("relay_outbox", ttl=120)
def relay_outbox() -> dict:
    """Send jobs that are committed but not on the broker (the next tick is the retry)."""
    return {"sent": outbox_relay()}

from domain.jobs.models import Job
from domain.notifications.deliveries import webhooks_deliver, webhooks_fan_out
from domain.notifications.kinds import WEBHOOK_DELIVERY, WEBHOOK_FANOUT
from workers.base import jobs_task


@jobs_task(kind=WEBHOOK_FANOUT)
def fan_out(jobs: list[Job]) -> list:
    """Make each event's message and one delivery per subscribed webhook endpoint."""
    return webhooks_fan_out(jobs)


@jobs_task(kind=WEBHOOK_DELIVERY)
def deliver(jobs: list[Job]) -> list:
    """Send signed webhook deliveries, concurrently, recording every attempt."""
    return webhooks_deliver(jobs)

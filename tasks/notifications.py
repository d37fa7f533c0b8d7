from domain.jobs.models import Job
from domain.notifications import notifiers
from domain.notifications.deliveries import webhooks_deliver, webhooks_fan_out
from domain.notifications.emails import emails_deliver
from domain.notifications.inbox import inbox_deliver
from domain.notifications.kinds import (
    EMAIL_DELIVERY,
    EVENT_NOTIFICATION,
    INBOX_DELIVERY,
    WEBHOOK_DELIVERY,
    WEBHOOK_FANOUT,
)
from workers.base import jobs_task


@jobs_task(kind=WEBHOOK_FANOUT)
def fan_out(jobs: list[Job]) -> list:
    """Make each event's message and one delivery per subscribed webhook endpoint."""
    return webhooks_fan_out(jobs)


@jobs_task(kind=WEBHOOK_DELIVERY)
def deliver(jobs: list[Job]) -> list:
    """Send signed webhook deliveries, concurrently, recording every attempt."""
    return webhooks_deliver(jobs)


@jobs_task(kind=EMAIL_DELIVERY)
def send_emails(jobs: list[Job]) -> list:
    """Render and send email deliveries over one SMTP connection, recording every attempt."""
    return emails_deliver(jobs)


@jobs_task(kind=INBOX_DELIVERY)
def write_inbox(jobs: list[Job]) -> list:
    """Render in-app deliveries into their recipients' inboxes."""
    return inbox_deliver(jobs)


@jobs_task(kind=EVENT_NOTIFICATION)
def notify_from_events(jobs: list[Job]) -> list:
    """Send the notification each event's notifier builds (once per event and notifier)."""
    return notifiers.notify_from_events(jobs)

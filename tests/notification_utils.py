"""Helpers for the email and in-app notification tests: a send through the real services, and
the job bodies run on the jobs it made (tests/domain/notifications/, tests/flows/)."""

from __future__ import annotations

from typing import Any

from domain.jobs.models import Job
from domain.notifications.emails import emails_deliver
from domain.notifications.inbox import inbox_deliver
from domain.notifications.models import Channel, Delivery
from domain.notifications.sending import SendResult, notification_send, notification_validate


def security_context(**changes: Any) -> dict:
    """A valid context of `security_alert` (the `security` category: required)."""
    return {"title": "New sign-in to your account", "message": "Someone signed in from Lyon.",
            "ip_address": "203.0.113.7", "occurred_at": "2026-11-28T09:00:00Z", **changes}


def comment_context(**changes: Any) -> dict:
    """A valid context of `comment_added` (the `comments` category; a digest template)."""
    return {"thread_id": "t-42", "thread_title": "Launch plan", "author": "Ada",
            "excerpt": "Looks good to me.", "url": "https://app.example.com/threads/t-42",
            **changes}


def people(count: int, prefix: str = "user") -> list[dict]:
    return [{"id": f"{prefix}-{i}", "email": f"{prefix}-{i}@example.com"} for i in range(count)]


def send(template: str = "security_alert", context: dict | None = None,
         recipients: list[dict] | None = None, channels: list[str] | None = None,
         **options: Any) -> SendResult:
    """Validate and send, as the API and the notifiers do."""
    if context is None:
        context = security_context() if template == "security_alert" else comment_context()
    draft = notification_validate(template=template, context=context,
                                  recipients=recipients if recipients is not None else people(1),
                                  channels=channels)
    return notification_send(draft=draft, **options)


def jobs_of(deliveries: list[Delivery], channel: str | None = None) -> list[Job]:
    """The job rows of these deliveries (those that have one), in the deliveries' order; a job
    that carries several (in-app deliveries share one per chunk) once."""
    wanted = list(dict.fromkeys(d.job_id for d in deliveries
                                if d.job_id and (channel is None or d.channel == channel)))
    found = Job.objects.in_bulk(wanted)
    return [found[pk] for pk in wanted]


def deliver_emails(deliveries: list[Delivery]) -> list[Any]:
    """Run the email job body on these deliveries' jobs, as one batch (one message)."""
    return emails_deliver(jobs_of(deliveries, Channel.EMAIL))


def deliver_inbox(deliveries: list[Delivery]) -> list[Any]:
    return inbox_deliver(jobs_of(deliveries, Channel.IN_APP))


def email_deliveries(result: SendResult) -> list[Delivery]:
    return [d for d in result.deliveries if d.channel == Channel.EMAIL]


def inapp_deliveries(result: SendResult) -> list[Delivery]:
    return [d for d in result.deliveries if d.channel == Channel.IN_APP]


def fresh(delivery: Delivery) -> Delivery:
    return Delivery.objects.get(pk=delivery.pk)

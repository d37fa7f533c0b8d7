"""Notifications from events: an event type's handler can send a notification.

A domain app registers a **notifier**: a name and a function that builds, from one event,
the notification to send (template, context, recipients; or None for nothing). The event
type lists `notifier_handler(name)` among its handlers, so each event gets one
`event_notification` job, beside its other handlers and the webhooks its subscribers get.
The job sends once however often it runs: the notification is unique on its source,
`<event id>:<notifier>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.common.errors import PermanentError, ValidationFailed
from domain.events.models import Event
from domain.events.registry import Handler
from domain.jobs.models import Job
from domain.notifications.kinds import EVENT_NOTIFICATION
from domain.notifications.sending import notification_send, notification_validate


@dataclass(frozen=True)
class NotifierRequest:
    template: str
    context: dict
    recipients: list[dict]
    channels: list[str] | None = None


@dataclass(frozen=True)
class Notifier:
    name: str
    build: Callable[[Event], NotifierRequest | None]
    description: str = ""


_notifiers: dict[str, Notifier] = {}


def register_notifier(notifier: Notifier) -> Notifier:
    if notifier.name in _notifiers and _notifiers[notifier.name] != notifier:
        raise ValueError(f"notifier {notifier.name!r} is already registered")
    _notifiers[notifier.name] = notifier
    return notifier


def notifier_handler(name: str) -> Handler:
    """The event type's handler that runs notifier `name` for each of its events."""
    return Handler(name=name, kind=EVENT_NOTIFICATION.name,
                   params=lambda payload: {"notifier": name})


def notify_from_events(jobs: list[Job]) -> list[Any]:
    events = {e.pk: e for e in Event.objects.filter(
        pk__in=[j.event_id for j in jobs if j.event_id]).select_related("api_key")}
    answers: list[Any] = []
    for job in jobs:
        try:
            answers.append(_notify(job, events.get(job.event_id)))
        except Exception as exc:  # noqa: BLE001 - this job's failure, decided by its policy
            # A notifier's bug (or one event it cannot read) is this job's answer: raised, it
            # failed the whole batch, up to 50 other events' notifications gone dead with it.
            answers.append(exc)
    return answers


def _notify(job: Job, event: Event | None) -> Any:
    notifier = _notifiers.get(job.params.get("notifier", ""))
    if notifier is None:
        return PermanentError(f"unknown notifier {job.params.get('notifier')!r}")
    if event is None:
        return PermanentError("the job's event no longer exists")
    request = notifier.build(event)
    if request is None:
        return {"skipped": f"notifier {notifier.name} sends nothing for this event"}
    try:
        draft = notification_validate(template=request.template, context=request.context,
                                      recipients=request.recipients, channels=request.channels)
    except ValidationFailed as exc:
        return PermanentError(f"{exc.code}: {exc.message} {exc.details or ''}".strip())
    result = notification_send(draft=draft, api_key=event.api_key,
                               correlation_id=event.correlation_id, event_id=event.pk,
                               source=f"{event.pk}:{notifier.name}")
    return {"notification": str(result.notification.pk), "created": result.created,
            "deliveries": len(result.deliveries)}

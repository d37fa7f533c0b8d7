"""Notifications from events: a notifier registered by the test builds the request from an
event; its job sends once per (event, notifier) however often it runs, and a request that
cannot be sent is a permanent error, never a retry loop."""

from __future__ import annotations

import pytest
from django.utils import timezone

from domain.access.services import api_key_create
from domain.common.errors import PermanentError
from domain.events.models import Event
from domain.events.services import event_publish
from domain.jobs.lifecycle import will_retry
from domain.jobs.models import Job
from domain.jobs.services import job_build
from domain.notifications import notifiers
from domain.notifications.kinds import EVENT_NOTIFICATION
from domain.notifications.models import Delivery, Notification
from domain.notifications.notifiers import (
    Notifier,
    NotifierRequest,
    notifier_handler,
    notify_from_events,
    register_notifier,
)
from tests.notification_utils import security_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def notifier():
    """Register notifiers for one test; they are gone after it."""
    added: list[str] = []

    def register(name: str, build) -> Notifier:
        added.append(name)
        return register_notifier(Notifier(name=name, build=build, description="a test's"))

    yield register
    for name in added:
        notifiers._notifiers.pop(name, None)


def _alert(event: Event) -> NotifierRequest:
    return NotifierRequest(
        template="security_alert",
        context=security_context(message=event.payload["message"]),
        recipients=[{"id": "u-1", "email": "u1@example.com"}])


def _event(message: str = "hello") -> Event:
    key, _ = api_key_create(name=f"publisher-{message}", scopes=["events:publish"])
    return event_publish(event_type="demo.ping", payload={"message": message}, api_key=key,
                         correlation_id=f"corr-{message}").event


def _job(event: Event | None, name: str) -> Job:
    job = job_build(kind=EVENT_NOTIFICATION.name, params={"notifier": name},
                    created_at=timezone.now(), event=event, handler=name)
    job.save()
    return job


def test_a_notifier_sends_the_notification_it_builds_once_per_event(notifier):
    notifier("tests.alert", _alert)
    event = _event("someone signed in")
    job = _job(event, "tests.alert")

    # when its job runs
    [answer] = notify_from_events([job])

    # then the notification is sent, from the event: its source, key and correlation id
    notification = Notification.objects.get()
    assert answer == {"notification": str(notification.pk), "created": True, "deliveries": 2}
    assert notification.source == f"{event.pk}:tests.alert"
    assert notification.event_id == event.pk
    assert notification.api_key_id == event.api_key_id
    assert notification.correlation_id == event.correlation_id
    assert notification.context["message"] == "someone signed in"

    # when the job runs again (a redelivery, a replay), then nothing more is sent
    [again] = notify_from_events([job])
    assert again == {"notification": str(notification.pk), "created": False, "deliveries": 2}
    assert Notification.objects.count() == 1 and Delivery.objects.count() == 2


def test_two_notifiers_of_one_event_send_one_each(notifier):
    notifier("tests.alert", _alert)
    notifier("tests.alert_again", _alert)
    event = _event()
    answers = notify_from_events([_job(event, "tests.alert"), _job(event, "tests.alert_again")])
    assert [a["created"] for a in answers] == [True, True]
    assert Notification.objects.filter(event_id=event.pk).count() == 2


def test_a_batch_of_events_each_get_their_own(notifier):
    notifier("tests.alert", _alert)
    events = [_event(f"event {n}") for n in range(3)]
    answers = notify_from_events([_job(e, "tests.alert") for e in events])
    assert [a["created"] for a in answers] == [True] * 3
    assert sorted(n.context["message"] for n in Notification.objects.all()) == [
        "event 0", "event 1", "event 2"]


@pytest.mark.parametrize("request_, code", [
    (NotifierRequest(template="no_such_template", context={}, recipients=[{"id": "u"}]),
     "unknown_template"),
    (NotifierRequest(template="security_alert", context={"title": "x"},
                     recipients=[{"id": "u"}]), "invalid_context"),
    (NotifierRequest(template="security_alert", context=security_context(), recipients=[]),
     "no_recipients"),
    (NotifierRequest(template="security_alert", context=security_context(),
                     recipients=[{"id": "u", "email": "nope"}]), "invalid_recipients"),
    (NotifierRequest(template="security_alert", context=security_context(),
                     recipients=[{"id": "u"}], channels=["sms"]), "unsupported_channel"),
])
def test_a_notifier_building_an_invalid_request_is_a_permanent_error(notifier, request_, code):
    notifier("tests.broken", lambda event: request_)
    job = _job(_event(), "tests.broken")

    [answer] = notify_from_events([job])

    # then the job fails for good, saying why, and nothing was written
    assert isinstance(answer, PermanentError)
    assert str(answer).startswith(f"{code}: ")
    assert not will_retry(job=job, exc=answer)
    assert not Notification.objects.exists()


def test_a_notifier_that_sends_nothing_for_an_event_says_so(notifier):
    notifier("tests.quiet", lambda event: None)
    [answer] = notify_from_events([_job(_event(), "tests.quiet")])
    assert answer == {"skipped": "notifier tests.quiet sends nothing for this event"}
    assert not Notification.objects.exists()


def test_an_unknown_notifier_or_a_missing_event_is_a_permanent_error(notifier):
    notifier("tests.alert", _alert)
    unknown, no_event = notify_from_events([_job(_event(), "tests.gone"),
                                            _job(None, "tests.alert")])
    assert isinstance(unknown, PermanentError) and "unknown notifier" in str(unknown)
    assert isinstance(no_event, PermanentError) and "no longer exists" in str(no_event)


def test_a_notifier_that_raises_fails_its_own_job_only(notifier):
    # given a batch where one event's notifier has a bug
    def buggy(event: Event) -> NotifierRequest:
        if event.payload["message"] == "bad":
            raise KeyError("customer_id")
        return _alert(event)

    notifier("tests.buggy", buggy)
    good, bad, good_too = (_job(_event(m), "tests.buggy") for m in ("good", "bad", "good 2"))

    # when the batch runs
    answers = notify_from_events([good, bad, good_too])

    # then the bad one's answer is its exception (the job's policy decides: a bug is not
    # transient, so it goes dead, replayable once fixed) and the others are sent
    assert isinstance(answers[1], KeyError)
    assert not will_retry(job=bad, exc=answers[1])
    assert [answers[0]["created"], answers[2]["created"]] == [True, True]
    assert Notification.objects.count() == 2


def test_notifier_handler_makes_one_event_notification_job_naming_the_notifier():
    handler = notifier_handler("orders.shipped_email")
    assert (handler.name, handler.kind) == ("orders.shipped_email", "event_notification")
    assert handler.params({"any": "payload"}) == {"notifier": "orders.shipped_email"}


def test_a_notifier_name_is_registered_once(notifier):
    notifier("tests.alert", _alert)
    with pytest.raises(ValueError, match="already registered"):
        register_notifier(Notifier(name="tests.alert", build=lambda event: None))

"""Sending a notification: every refusal (422) before anything is written, idempotency by key
and by source, one delivery per (recipient, channel) in the request's order, and nothing
half-written."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, transaction

from domain.access.services import api_key_create
from domain.common.errors import Conflict, ValidationFailed
from domain.jobs.models import Job
from domain.notifications.inbox import inbox_deliver
from domain.notifications.kinds import EMAIL_DELIVERY, INBOX_DELIVERY
from domain.notifications.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    Digest,
    InboxItem,
    Notification,
)
from domain.notifications.sending import (
    NO_ADDRESS,
    NotificationDraft,
    Recipient,
    notification_send,
    notification_validate,
)
from tests.notification_utils import people, security_context, send

pytestmark = pytest.mark.django_db


def _rows() -> dict[str, int]:
    return {"notifications": Notification.objects.count(),
            "deliveries": Delivery.objects.count(), "jobs": Job.objects.count(),
            "digests": Digest.objects.count()}


def _refused(code: str, **request) -> ValidationFailed:
    request.setdefault("template", "security_alert")
    request.setdefault("context", security_context())
    request.setdefault("recipients", people(1))
    before = _rows()
    with pytest.raises(ValidationFailed) as refused:
        notification_validate(**request)
    assert refused.value.code == code, (refused.value.code, refused.value.details)
    assert refused.value.status_code == 422
    assert _rows() == before  # nothing written
    return refused.value


# --- Refusals (422) --------------------------------------------------------------------------

def test_an_unknown_template_is_refused_naming_the_known_ones():
    error = _refused("unknown_template", template="no_such_template")
    assert {"security_alert", "comment_added"} <= set(error.details["known"])


@pytest.mark.parametrize("channels", [["sms"], ["webhook"], ["email", "push"]])
def test_a_channel_the_template_does_not_support_is_refused(channels):
    error = _refused("unsupported_channel", channels=channels)
    assert error.details["supported"] == ["email", "in_app"]
    assert set(error.details["channels"]) == set(channels) - {"email", "in_app"}


def test_a_channel_a_template_left_out_is_refused(test_template):
    test_template("tests_in_app_only", subject="Hi", text="Hello", channels=("in_app",),
                  schema={"type": "object"}, example={})
    error = _refused("unsupported_channel", template="tests_in_app_only", context={},
                     channels=["email"])
    assert error.details == {"channels": ["email"], "supported": ["in_app"]}


def test_no_recipients_is_refused():
    _refused("no_recipients", recipients=[])


def test_more_recipients_than_the_limit_are_refused(settings):
    # given the default limit, 1,000: 1,000 pass and 1,001 do not
    assert settings.NOTIFICATIONS_MAX_RECIPIENTS == 1000
    assert len(notification_validate(template="security_alert", context=security_context(),
                                     recipients=people(1000)).recipients) == 1000
    error = _refused("too_many_recipients", recipients=people(1001))
    assert error.details == {"limit": 1000, "received": 1001}
    # and the setting moves it
    settings.NOTIFICATIONS_MAX_RECIPIENTS = 3
    _refused("too_many_recipients", recipients=people(4))


def test_invalid_recipients_are_all_named_by_index():
    # given a list with a duplicate id and an invalid address among valid ones
    recipients = [{"id": "a", "email": "a@example.com"}, {"id": "b"},
                  {"id": "a", "email": "other@example.com"}, {"id": "c", "email": "not-email"}]

    error = _refused("invalid_recipients", recipients=recipients)

    # then every bad one is named by its index, with its own code
    found = error.details["recipients"]
    assert set(found) == {"2", "3"}
    assert found["2"]["code"] == "duplicate_recipient"
    assert found["3"]["code"] == "invalid_email"
    assert "2 of 4 recipients are invalid" in error.message


def test_one_bad_recipient_among_a_thousand_refuses_them_all():
    recipients = people(1000)
    recipients[998]["email"] = "broken@"
    error = _refused("invalid_recipients", recipients=recipients)
    assert set(error.details["recipients"]) == {"998"}


@pytest.mark.parametrize("recipient", [
    {"email": "no-id@example.com"},
    {"id": "", "email": "empty-id@example.com"},
    {"id": None},
    {"id": True},
    {"id": ["u-1"]},
    {"id": "x" * 201},
    "just-a-string",
    None,
])
def test_a_recipient_without_a_usable_id_is_refused(recipient):
    # given a recipient the deliveries could not name (no id, an empty one, not text, longer
    # than a recipient id can be), or not an object at all
    error = _refused("invalid_recipients", recipients=[{"id": "ok"}, recipient])
    assert set(error.details["recipients"]) == {"1"}
    assert error.details["recipients"]["1"]["code"] == "invalid_recipient"


def test_an_email_that_is_not_text_is_an_invalid_email():
    error = _refused("invalid_recipients", recipients=[{"id": "a", "email": 42}])
    assert error.details["recipients"]["0"]["code"] == "invalid_email"


@pytest.mark.parametrize("email", ["a@[127.0.0.1]", "a@[10.0.0.5]", "a@[IPv6:::1]"])
def test_an_address_literal_is_an_invalid_email(email):
    # Django's validator takes them; the mail relay would connect to the address given
    error = _refused("invalid_recipients", recipients=[{"id": "a", "email": email}])
    assert error.details["recipients"]["0"]["code"] == "invalid_email"


def test_a_numeric_id_is_taken_as_its_text_and_200_characters_fit():
    # (a notifier in code may pass a customer's primary key)
    draft = notification_validate(template="security_alert", context=security_context(),
                                  recipients=[{"id": 42}, {"id": "y" * 200}])
    assert [r.id for r in draft.recipients] == ["42", "y" * 200]


def test_a_context_that_is_not_an_object_is_refused():
    _refused("invalid_context", context=["title"])
    _refused("invalid_context", context=None)


def test_a_context_failing_the_schema_is_refused_with_each_error():
    context = security_context(extra="x")
    del context["title"]
    error = _refused("invalid_context", context=context)
    assert len(error.details["errors"]) == 2


def test_a_variable_the_context_lacks_is_refused_before_anything_is_written(test_template):
    # given a template whose text prints `note`, which its schema does not require
    test_template("tests_reminder", subject="Reminder for {{ name }}",
                  text="{{ name }}: {{ note }}",
                  schema={"type": "object", "properties": {"name": {"type": "string"},
                                                          "note": {"type": "string"}},
                          "required": ["name"]},
                  example={"name": "Ada", "note": "bring the keys"})

    # when a send's context leaves it out, then it is 422 missing_variable, naming it
    error = _refused("missing_variable", template="tests_reminder", context={"name": "Ada"})
    assert error.details == {"variable": "note", "part": "text.txt"}
    # and with it, the same send is accepted
    notification_validate(template="tests_reminder", context={"name": "Ada", "note": "keys"},
                          recipients=people(1))


# --- Idempotency -----------------------------------------------------------------------------

def test_the_same_key_and_body_replays_the_first_notification():
    key, _ = api_key_create(name="sender", scopes=["notifications:write"])
    first = send(recipients=people(3), api_key=key, idempotency_key="order-1")
    before = _rows()

    replay = send(recipients=people(3), api_key=key, idempotency_key="order-1")

    assert first.created is True and replay.created is False
    assert replay.notification.pk == first.notification.pk
    assert [d.pk for d in replay.deliveries] == [d.pk for d in first.deliveries]
    assert _rows() == before


def test_the_same_key_with_another_body_is_409_and_writes_nothing():
    key, _ = api_key_create(name="sender", scopes=["notifications:write"])
    first = send(recipients=people(1), api_key=key, idempotency_key="order-1")
    before = _rows()

    with pytest.raises(Conflict) as conflict:
        send(recipients=people(2), api_key=key, idempotency_key="order-1")

    assert conflict.value.code == "idempotency_key_reused"
    assert conflict.value.status_code == 409
    assert conflict.value.details == {"notification": str(first.notification.pk)}
    assert _rows() == before


def test_a_key_belongs_to_its_api_key():
    one, _ = api_key_create(name="one", scopes=["notifications:write"])
    two, _ = api_key_create(name="two", scopes=["notifications:write"])
    first = send(api_key=one, idempotency_key="same")
    second = send(api_key=two, idempotency_key="same")
    assert second.created is True and second.notification.pk != first.notification.pk


def test_a_source_sends_once():
    # given a notification an event's handler sent
    first = send(recipients=people(2), source="evt-1:order_shipped")
    before = _rows()

    # when the handler's job runs again (even building another body), then the first answers
    again = send(recipients=people(3), source="evt-1:order_shipped")

    assert again.created is False and again.notification.pk == first.notification.pk
    assert [d.pk for d in again.deliveries] == [d.pk for d in first.deliveries]
    assert _rows() == before
    # and another source is another notification
    assert send(source="evt-2:order_shipped").created is True


# --- Deliveries ------------------------------------------------------------------------------

def test_one_delivery_per_recipient_and_channel_in_the_requests_order():
    # given three recipients in no sorted order, and the channels in-app first
    recipients = [{"id": "carol", "email": "c@example.com"}, {"id": "alice", "email": "a@e.com"},
                  {"id": "bob", "email": "b@example.com"}]

    result = send(recipients=recipients, channels=["in_app", "email", "in_app"])

    # then one delivery per (recipient, channel), recipient by recipient, channel by channel
    expected = [(r["id"], c) for r in recipients for c in ("in_app", "email")]
    assert [(d.recipient_id, d.channel) for d in result.deliveries] == expected
    stored = Delivery.objects.filter(notification=result.notification).order_by(
        "created_at", "id")
    assert [(d.recipient_id, d.channel) for d in stored] == expected
    # and an email delivery keeps its address, an in-app one none
    assert [d.address for d in stored if d.channel == Channel.EMAIL] == [
        "c@example.com", "a@e.com", "b@example.com"]
    assert {d.address for d in stored if d.channel == Channel.IN_APP} == {""}
    # and each email delivery has its own job naming it
    jobs = Job.objects.in_bulk([d.job_id for d in stored])
    for delivery in stored:
        if delivery.channel == Channel.EMAIL:
            job = jobs[delivery.job_id]
            assert job.kind == EMAIL_DELIVERY.name
            assert job.params == {"delivery": str(delivery.pk)}
    # and the in-app ones share one job (a chunk) listing them in the request's order
    in_app = [d for d in stored if d.channel == Channel.IN_APP]
    [chunk] = {d.job_id for d in in_app}
    assert jobs[chunk].kind == INBOX_DELIVERY.name
    assert jobs[chunk].params == {"deliveries": [str(d.pk) for d in in_app]}
    assert Job.objects.count() == 4
    assert result.notification.recipients_count == 3
    assert result.notification.channels == ["in_app", "email"]


def test_in_app_deliveries_are_chunked_250_to_a_job_in_the_requests_order():
    # given 300 recipients, by email and in-app
    result = send(recipients=people(300), channels=["email", "in_app"])

    # then the 300 in-app deliveries make two jobs, of 250 and 50, in the request's order
    in_app = [d for d in result.deliveries if d.channel == Channel.IN_APP]
    chunks = list(Job.objects.filter(kind=INBOX_DELIVERY.name).order_by("created_at", "id"))
    assert [job.params["deliveries"] for job in chunks] == [
        [str(d.pk) for d in in_app[:250]], [str(d.pk) for d in in_app[250:]]]
    # and each delivery names the job that carries it
    stored = dict(Delivery.objects.filter(channel=Channel.IN_APP).values_list("pk", "job_id"))
    assert [stored[d.pk] for d in in_app] == [chunks[0].pk] * 250 + [chunks[1].pk] * 50
    # and the emails keep one job each
    assert Job.objects.filter(kind=EMAIL_DELIVERY.name).count() == 300

    # when the two jobs run, then each writes its chunk and counts it
    assert inbox_deliver(chunks) == [
        {"delivered": 250, "skipped": 0, "failed": 0, "not_written": 0},
        {"delivered": 50, "skipped": 0, "failed": 0, "not_written": 0}]
    assert InboxItem.objects.count() == 300


def test_a_second_delivery_for_the_same_recipient_and_channel_cannot_exist():
    result = send(recipients=people(1), channels=["email"])
    [delivery] = result.deliveries
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(notification=result.notification,
                                recipient_id=delivery.recipient_id, channel=Channel.EMAIL)


def test_without_channels_a_send_uses_every_channel_of_its_template():
    result = send(recipients=people(1))
    assert [d.channel for d in result.deliveries] == ["email", "in_app"]


def test_an_email_to_a_recipient_without_an_address_is_skipped_and_in_app_still_goes():
    # given a recipient without an email address
    result = send(recipients=[{"id": "no-mail"}, {"id": "mail", "email": "m@example.com"}],
                  channels=["email", "in_app"])
    by_key = {(d.recipient_id, d.channel): d for d in result.deliveries}

    # then their email delivery is skipped, with the reason, and has no job
    skipped = Delivery.objects.get(pk=by_key["no-mail", "email"].pk)
    assert (skipped.status, skipped.reason, skipped.job_id) == (
        DeliveryStatus.SKIPPED, NO_ADDRESS, None)
    # and their in-app delivery, and the other recipient's email, are pending with jobs
    for key in (("no-mail", "in_app"), ("mail", "email"), ("mail", "in_app")):
        delivery = Delivery.objects.get(pk=by_key[key].pk)
        assert delivery.status == DeliveryStatus.PENDING
        assert Job.objects.filter(pk=delivery.job_id).exists()
    # the other's email its own, and both in-app deliveries one, no-mail's listed
    chunk = Job.objects.get(kind=INBOX_DELIVERY.name)
    assert chunk.params == {"deliveries": [str(by_key["no-mail", "in_app"].pk),
                                           str(by_key["mail", "in_app"].pk)]}
    assert Job.objects.count() == 2


def test_a_send_that_fails_while_writing_leaves_nothing_behind():
    # given a draft that passed no validation: one recipient twice (the validator refuses
    # it; here the deliveries' unique constraint does, after the notification row is written)
    draft = NotificationDraft(
        template=notification_validate(template="security_alert", context=security_context(),
                                       recipients=people(1)).template,
        context=security_context(), channels=("email", "in_app"),
        recipients=[Recipient(id="ok", email="ok@example.com"), Recipient(id="twice"),
                    Recipient(id="twice")])
    before = _rows()

    # when it is sent, then it fails, and neither the notification nor any delivery or job
    # stays
    with pytest.raises(DatabaseError):
        notification_send(draft=draft)
    assert _rows() == before


def test_the_correlation_id_and_api_key_follow_into_deliveries_and_jobs():
    key, _ = api_key_create(name="sender", scopes=["notifications:write"])
    result = send(recipients=people(2), api_key=key, correlation_id="corr-123")
    assert result.notification.correlation_id == "corr-123"
    for delivery in Delivery.objects.filter(notification=result.notification):
        assert delivery.api_key_id == key.pk
        job = Job.objects.get(pk=delivery.job_id)
        assert (job.correlation_id, job.api_key_id) == ("corr-123", key.pk)

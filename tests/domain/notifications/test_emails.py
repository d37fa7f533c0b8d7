"""Email deliveries against a real SMTP server (tests/smtp_sink.py, aiosmtpd) that parses
every message it accepts: headers, both parts, one connection per batch, what each SMTP reply
does to its delivery (4xx retries, 5xx fails that one), preferences and required categories,
and no email sent twice.

The job body (`emails_deliver`) runs here on the job rows the send made; the same body on the
real worker thread is tests/flows/test_notification_flow.py."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from domain.access.services import api_key_create
from domain.common.errors import PermanentError, TransientError, ValidationFailed
from domain.jobs.lifecycle import will_retry
from domain.notifications.models import (
    AttemptResult,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    InboxItem,
    Notification,
    RecipientPreference,
)
from domain.notifications.preferences import (
    opted_out_reason,
    preferences_put,
    unsubscribe_read,
)
from tests.faults.procs import free_port
from tests.notification_utils import (
    deliver_emails,
    deliver_inbox,
    email_deliveries,
    fresh,
    inapp_deliveries,
    jobs_of,
    people,
    security_context,
    send,
)

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://notify.example.com"


def _attempts(delivery: Delivery) -> list[tuple[str, int | None]]:
    return [(a.outcome, a.smtp_code)
            for a in DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")]


# --- What a message holds --------------------------------------------------------------------

def test_a_message_has_its_headers_and_both_parts_rendered_from_the_context(smtp_sink):
    # given a security alert whose context holds characters HTML must escape
    context = security_context(title="Sign-in from <Firefox>",
                               message="Someone & something signed in.")
    result = send(recipients=[{"id": "u-1", "email": "ada@example.com"}], context=context,
                  channels=["email"])
    [delivery] = result.deliveries

    # when its job runs
    [answer] = deliver_emails(result.deliveries)

    # then the server received one message with the headers a mail system needs
    assert answer["delivery"] == DeliveryStatus.DELIVERED and answer["smtp_code"] == 250
    [message] = smtp_sink.messages_to("ada@example.com")
    assert message.mail_from == "notifications@localhost"
    assert message["From"] == django_settings.DEFAULT_FROM_EMAIL
    assert message["To"] == "ada@example.com"
    assert message.subject == "Sign-in from <Firefox>"
    assert message["Message-ID"] == (
        f"<{delivery.pk}@{django_settings.EMAIL_MESSAGE_ID_DOMAIN}>")
    assert message["X-Conveyor-Delivery"] == str(delivery.pk)
    assert message["X-Conveyor-Template"] == "security_alert"
    # and a plain-text part, not escaped, and an HTML part, escaped, both from the context
    assert message.message.get_content_type() == "multipart/alternative"
    assert "Someone & something signed in." in message.text
    assert "When: 2026-11-28T09:00:00Z" in message.text
    assert "From: 203.0.113.7" in message.text
    assert "<h1>Sign-in from &lt;Firefox&gt;</h1>" in message.html
    assert "<p>Someone &amp; something signed in.</p>" in message.html
    # and the delivery is delivered, its one attempt keeping the server's reply to DATA
    stored = fresh(delivery)
    assert stored.status == DeliveryStatus.DELIVERED and stored.attempts == 1
    [attempt] = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (attempt.outcome, attempt.smtp_code) == (AttemptResult.DELIVERED, 250)
    assert attempt.response_excerpt == "2.0.0 Ok: queued as 1"
    assert attempt.latency_ms is not None


def test_a_non_required_category_carries_list_unsubscribe_with_one_click(smtp_sink, settings):
    # given a public URL, and a comment (category `comments`, not required)
    settings.NOTIFICATIONS_PUBLIC_URL = PUBLIC_URL + "/"
    result = send("comment_added", recipients=[{"id": "u-7", "email": "bo@example.com"}],
                  channels=["email"])

    # when its email is sent (a digest of one: its carrier's job runs)
    deliver_emails(result.deliveries)

    # then List-Unsubscribe links to a token that opts out exactly that recipient and category,
    # and List-Unsubscribe-Post asks for the one-click POST (RFC 8058)
    [message] = smtp_sink.messages_to("bo@example.com")
    # (a long value is folded onto its own line; unfolded, it is the link in angle brackets)
    link = message["List-Unsubscribe"].strip()
    assert link.startswith(f"<{PUBLIC_URL}/api/v1/unsubscribe/") and link.endswith(">")
    token = link[len(f"<{PUBLIC_URL}/api/v1/unsubscribe/"):-1]
    assert unsubscribe_read(token) == ("u-7", "comments")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # and both parts offer the same link
    assert f"Stop these emails: {link[1:-1]}" in message.text
    assert f'<a href="{link[1:-1]}">Stop these emails</a>' in message.html


def test_a_required_category_has_no_list_unsubscribe(smtp_sink, settings):
    # given a public URL, and a security alert (category `security`, required)
    settings.NOTIFICATIONS_PUBLIC_URL = PUBLIC_URL
    result = send(recipients=[{"id": "u-1", "email": "ada@example.com"}], channels=["email"])

    # when it is sent
    deliver_emails(result.deliveries)

    # then it has no unsubscribe headers: it cannot be opted out of
    [message] = smtp_sink.messages_to("ada@example.com")
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None
    assert "unsubscribe" not in message.text.lower()


def test_without_a_public_url_there_is_no_list_unsubscribe(smtp_sink, settings):
    # given no public URL (the default): a link would have nowhere to point
    settings.NOTIFICATIONS_PUBLIC_URL = ""
    result = send("comment_added", recipients=[{"id": "u-7", "email": "bo@example.com"}],
                  channels=["email"])

    deliver_emails(result.deliveries)

    [message] = smtp_sink.messages_to("bo@example.com")
    assert message["List-Unsubscribe"] is None
    assert "Stop these emails" not in message.text


# --- One connection a batch ------------------------------------------------------------------

def test_one_smtp_connection_carries_a_batch(smtp_sink):
    # given a security alert to 25 recipients
    result = send(recipients=people(25), channels=["email"])

    # when their 25 jobs run as one batch (one broker message)
    answers = deliver_emails(result.deliveries)

    # then the server saw one connection, which carried all 25 messages, each its own
    assert [a["delivery"] for a in answers] == [DeliveryStatus.DELIVERED] * 25
    assert smtp_sink.connections == 1
    assert len(smtp_sink.received) == 25
    assert {m.connection for m in smtp_sink.received} == {1}
    assert len({m["Message-ID"] for m in smtp_sink.received}) == 25
    assert sorted(m["To"] for m in smtp_sink.received) == sorted(
        p["email"] for p in people(25))
    # and two batches are two connections
    deliver_emails(send(recipients=people(2, "more"), channels=["email"]).deliveries)
    assert smtp_sink.connections == 2


# --- SMTP replies ----------------------------------------------------------------------------

def test_a_4xx_reply_retries_and_the_next_run_delivers_once(smtp_sink):
    # given three recipients, the server busy for the second one's first RCPT
    recipients = people(3)
    busy = recipients[1]["email"]
    smtp_sink.script(busy, rcpt=["450 4.2.1 busy"])
    result = send(recipients=recipients, channels=["email"])
    deliveries = result.deliveries

    # when the batch's jobs run
    answers = deliver_emails(deliveries)

    # then that delivery failed transiently: it is retrying, its attempt `failed` with the 450
    assert isinstance(answers[1], TransientError)
    assert will_retry(job=jobs_of(deliveries)[1], exc=answers[1])
    assert fresh(deliveries[1]).status == DeliveryStatus.RETRYING
    [attempt] = DeliveryAttempt.objects.filter(delivery=deliveries[1])
    assert (attempt.outcome, attempt.smtp_code) == (AttemptResult.FAILED, 450)
    assert attempt.response_excerpt == "4.2.1 busy"
    assert fresh(deliveries[1]).last_error["type"] == "TransientError"
    # and the others were delivered on the same connection (a refused RCPT does not close it)
    assert [fresh(d).status for d in (deliveries[0], deliveries[2])] == [
        DeliveryStatus.DELIVERED] * 2
    assert smtp_sink.messages_to(busy) == []
    assert smtp_sink.connections == 1

    # when its job runs again (the retry), the server accepting now
    [again] = deliver_emails([deliveries[1]])

    # then exactly one message arrived for it, and its attempts say failed then delivered
    assert again["delivery"] == DeliveryStatus.DELIVERED
    assert len(smtp_sink.messages_to(busy)) == 1
    assert fresh(deliveries[1]).status == DeliveryStatus.DELIVERED
    assert fresh(deliveries[1]).attempts == 2
    assert _attempts(deliveries[1]) == [(AttemptResult.FAILED, 450),
                                        (AttemptResult.DELIVERED, 250)]
    assert len(smtp_sink.received) == 3


def test_a_4xx_reply_to_data_retries_too(smtp_sink):
    # given the server answering DATA with 451 once for one recipient
    smtp_sink.script("ada@example.com", data=["451 4.3.0 queue full"])
    result = send(recipients=[{"id": "u-1", "email": "ada@example.com"}], channels=["email"])

    [answer] = deliver_emails(result.deliveries)

    assert isinstance(answer, TransientError)
    assert _attempts(result.deliveries[0]) == [(AttemptResult.FAILED, 451)]
    assert fresh(result.deliveries[0]).status == DeliveryStatus.RETRYING
    assert len(smtp_sink.refused) == 1 and smtp_sink.received == []

    [again] = deliver_emails(result.deliveries)

    assert again["delivery"] == DeliveryStatus.DELIVERED
    assert len(smtp_sink.messages_to("ada@example.com")) == 1


def test_a_5xx_reply_fails_that_delivery_for_good_and_leaves_the_others(smtp_sink):
    # given three recipients, one of whom the server does not know
    recipients = people(3)
    unknown = recipients[0]["email"]
    smtp_sink.script(unknown, rcpt=["550 5.1.1 no such user"])
    result = send(recipients=recipients, channels=["email"])
    deliveries = result.deliveries

    # when the batch runs
    answers = deliver_emails(deliveries)

    # then that one failed permanently: status failed, its attempt gave up with the 550
    assert isinstance(answers[0], PermanentError)
    assert not will_retry(job=jobs_of(deliveries)[0], exc=answers[0])
    stored = fresh(deliveries[0])
    assert stored.status == DeliveryStatus.FAILED
    assert stored.last_error == {"type": "PermanentError",
                                 "message": "SMTP 550 5.1.1 no such user"}
    [attempt] = DeliveryAttempt.objects.filter(delivery=deliveries[0])
    assert (attempt.outcome, attempt.smtp_code) == (AttemptResult.GAVE_UP, 550)
    assert attempt.response_excerpt == "5.1.1 no such user"
    # and the other two in the same batch were delivered
    assert [a["delivery"] for a in answers[1:]] == [DeliveryStatus.DELIVERED] * 2
    assert [fresh(d).status for d in deliveries[1:]] == [DeliveryStatus.DELIVERED] * 2
    assert sorted(m["To"] for m in smtp_sink.received) == sorted(
        r["email"] for r in recipients[1:])


def test_a_refused_connection_fails_two_tries_then_the_rest_waits_without_an_attempt(
        settings):
    # given Django's SMTP backend pointed at a port where nothing listens
    port = free_port()
    settings.EMAIL_BACKEND = "domain.notifications.email_backend.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    result = send(recipients=people(4), channels=["email"])
    deliveries = result.deliveries

    # when the batch runs
    answers = deliver_emails(deliveries)

    # then the first two tries failed transiently and will retry: no SMTP code, the error
    # kept with an attempt each
    assert all(isinstance(a, TransientError) for a in answers[:2]), answers
    assert all("ConnectionRefusedError" in str(a) for a in answers[:2])
    for delivery in deliveries[:2]:
        assert fresh(delivery).status == DeliveryStatus.RETRYING
        assert _attempts(delivery) == [(AttemptResult.FAILED, None)]
    # and the server being unreachable twice in a row, the others were not tried: they wait
    # for the first retry's delay without using an attempt (not a timeout paid per message)
    assert [(type(a).__name__, a.countdown) for a in answers[2:]] == [
        ("Deferred", settings.EMAIL_RETRY_SCHEDULE[0])] * 2
    for delivery in deliveries[2:]:
        stored = fresh(delivery)
        assert stored.status == DeliveryStatus.PENDING and stored.next_attempt_at
        assert _attempts(delivery) == []


def test_a_missing_variable_at_send_time_fails_permanently_without_sending(smtp_sink):
    # given a notification whose stored context lost a field its templates print (written
    # directly: the API refuses such a context with 422 missing_variable)
    result = send(recipients=people(2), channels=["email", "in_app"])
    context = security_context()
    del context["message"]
    Notification.objects.filter(pk=result.notification.pk).update(context=context)

    # when its email jobs run
    answers = deliver_emails(result.deliveries)

    # then each is a permanent error naming the variable, the policy gives it no retry,
    # and nothing reached the server
    assert all(isinstance(a, PermanentError) for a in answers), answers
    assert "message" in str(answers[0])
    jobs = jobs_of(email_deliveries(result))
    assert not any(will_retry(job=j, exc=a) for j, a in zip(jobs, answers, strict=True))
    assert smtp_sink.received == [] and smtp_sink.connections == 0
    for delivery in email_deliveries(result):
        stored = fresh(delivery)
        assert stored.status == DeliveryStatus.FAILED
        assert stored.last_error["type"] == "PermanentError"
        assert _attempts(delivery) == [(AttemptResult.GAVE_UP, None)]

    # and in-app alike: their one job (a chunk) counts both failed, each delivery is failed
    # for good with its attempt naming the variable, and no inbox item is written
    answers = deliver_inbox(result.deliveries)
    assert answers == [{"delivered": 0, "skipped": 0, "failed": 2, "not_written": 0}]
    for delivery in inapp_deliveries(result):
        stored = fresh(delivery)
        assert stored.status == DeliveryStatus.FAILED
        assert stored.last_error["type"] == "PermanentError"
        assert "message" in stored.last_error["message"]
        assert _attempts(delivery) == [(AttemptResult.GAVE_UP, None)]
    assert not InboxItem.objects.exists()

    # and the chunk run again (its worker died before the job's own record) fails nothing a
    # second time: the failed deliveries keep their one attempt
    assert deliver_inbox(result.deliveries) == [
        {"delivered": 0, "skipped": 0, "failed": 0, "not_written": 2}]
    for delivery in inapp_deliveries(result):
        assert _attempts(delivery) == [(AttemptResult.GAVE_UP, None)]


# --- Preferences and required categories -----------------------------------------------------

def test_an_opted_out_channel_is_skipped_with_its_reason_and_the_other_delivered(smtp_sink):
    # given a recipient who opted out of comments by email (not in-app)
    preferences_put(recipient_id="u-9", choices={"comments": {"email": False}})
    result = send("comment_added", recipients=[{"id": "u-9", "email": "cy@example.com"}],
                  channels=["email", "in_app"])

    # when the email's and the in-app item's jobs run
    [email_answer] = deliver_emails(result.deliveries)
    [inbox_answer] = deliver_inbox(result.deliveries)

    # then the email is skipped with the reason, nothing sent, no attempt
    reason = opted_out_reason("comments", "email")
    assert email_answer == {"delivery": DeliveryStatus.SKIPPED, "reason": reason}
    [email] = email_deliveries(result)
    assert (fresh(email).status, fresh(email).reason) == (DeliveryStatus.SKIPPED, reason)
    assert not DeliveryAttempt.objects.filter(delivery=email).exists()
    assert smtp_sink.received == [] and smtp_sink.connections == 0
    # and the in-app item is delivered
    assert inbox_answer == {"delivered": 1, "skipped": 0, "failed": 0, "not_written": 0}
    [in_app] = inapp_deliveries(result)
    assert (fresh(in_app).status, fresh(in_app).reason) == (DeliveryStatus.DELIVERED, "")
    assert InboxItem.objects.filter(recipient_id="u-9").count() == 1
    # and running the email job again still sends nothing
    deliver_emails(result.deliveries)
    assert smtp_sink.received == []


def test_an_opt_out_made_while_a_delivery_waits_is_honoured(smtp_sink):
    # given an email waiting for its job (a retry, a digest window)
    result = send("comment_added", recipients=[{"id": "u-9", "email": "cy@example.com"}],
                  channels=["email"])

    # when the recipient opts out before it runs
    preferences_put(recipient_id="u-9", choices={"comments": {"email": False}})
    deliver_emails(result.deliveries)

    # then it is skipped
    assert fresh(result.deliveries[0]).status == DeliveryStatus.SKIPPED
    assert smtp_sink.received == []


def test_a_required_category_cannot_be_opted_out_of_and_a_stored_no_is_ignored(smtp_sink):
    # when a recipient asks not to get security notices by email, then it is refused
    with pytest.raises(ValidationFailed) as refused:
        preferences_put(recipient_id="u-1", choices={"security": {"email": False}})
    assert refused.value.code == "required_category"
    assert not RecipientPreference.objects.exists()

    # given a "no" written directly anyway (an old row, an admin edit)
    for channel in ("email", "in_app"):
        RecipientPreference.objects.create(recipient_id="u-1", category="security",
                                           channel=channel, enabled=False)
    result = send(recipients=[{"id": "u-1", "email": "ada@example.com"}],
                  channels=["email", "in_app"])

    # when the jobs run, then the email is sent and the in-app item written all the same
    [email_answer] = deliver_emails(result.deliveries)
    [inbox_answer] = deliver_inbox(result.deliveries)
    assert email_answer["delivery"] == DeliveryStatus.DELIVERED
    assert inbox_answer == {"delivered": 1, "skipped": 0, "failed": 0, "not_written": 0}
    assert {fresh(d).status for d in result.deliveries} == {DeliveryStatus.DELIVERED}
    assert len(smtp_sink.messages_to("ada@example.com")) == 1
    assert InboxItem.objects.filter(recipient_id="u-1").count() == 1


# --- No email twice --------------------------------------------------------------------------

def test_the_same_job_run_twice_sends_one_email(smtp_sink):
    result = send(recipients=people(2), channels=["email"])

    first = deliver_emails(result.deliveries)
    second = deliver_emails(result.deliveries)

    assert [a["delivery"] for a in first] == [DeliveryStatus.DELIVERED] * 2
    assert second == [{"delivery": DeliveryStatus.DELIVERED, "sent": False,
                       "note": "delivered already; not sent again"}] * 2
    assert len(smtp_sink.received) == 2
    assert smtp_sink.connections == 1  # the second run did not even connect
    for delivery in result.deliveries:
        assert fresh(delivery).attempts == 1 and len(_attempts(delivery)) == 1


def test_a_replayed_send_with_the_same_idempotency_key_sends_one_email(smtp_sink):
    # given the same send twice with one Idempotency-Key (a client's retry; keys are per
    # API key, as for events)
    key, _ = api_key_create(name="sender", scopes=["notifications:write"])
    first = send(recipients=people(1), channels=["email"], api_key=key, idempotency_key="k-1")
    replay = send(recipients=people(1), channels=["email"], api_key=key, idempotency_key="k-1")
    assert replay.created is False and replay.notification.pk == first.notification.pk

    # when every job either of them names runs
    deliver_emails(first.deliveries)
    deliver_emails(replay.deliveries)

    # then one email went out
    assert len(smtp_sink.received) == 1
    assert Delivery.objects.filter(notification=first.notification).count() == 1


def test_a_delivered_delivery_is_never_sent_again_even_by_another_job(smtp_sink):
    # given a delivered email
    result = send(recipients=people(1), channels=["email"])
    deliver_emails(result.deliveries)
    [delivery] = result.deliveries

    # when a new job is made to carry it (as an operator's recovery would) and runs
    job = jobs_of(result.deliveries)[0]
    job.pk = None
    job.id = None
    job.save()
    Delivery.objects.filter(pk=delivery.pk).update(job_id=job.pk)
    answers = deliver_emails([fresh(delivery)])

    # then it is not sent again
    assert answers[0]["sent"] is False
    assert len(smtp_sink.received) == 1
    assert fresh(delivery).attempts == 1


def test_a_job_that_no_longer_carries_its_delivery_sends_nothing(smtp_sink):
    # given a delivery whose job was superseded by another one (a replay made a new job)
    result = send(recipients=people(1), channels=["email"])
    [old_job] = jobs_of(result.deliveries)
    new_job = jobs_of(result.deliveries)[0]
    new_job.pk = None
    new_job.id = None
    new_job.save()
    Delivery.objects.filter(pk=result.deliveries[0].pk).update(job_id=new_job.pk)

    # when the old job runs, then it sends nothing; the new one sends it
    from domain.notifications.emails import emails_deliver

    [old_answer] = emails_deliver([old_job])
    assert "superseded" in old_answer["skipped"]
    assert smtp_sink.received == []
    [new_answer] = emails_deliver([new_job])
    assert new_answer["delivery"] == DeliveryStatus.DELIVERED
    assert len(smtp_sink.received) == 1



@pytest.mark.parametrize("step", ["rcpt", "data"])
def test_a_421_closing_the_connection_fails_that_message_and_the_next_ones_reconnect(
        smtp_sink, step):
    # given the server answering 421 (service closing) for the first of three recipients
    recipients = people(3)
    smtp_sink.script(recipients[0]["email"], **{step: ["421 4.7.0 closing, try later"]})
    result = send(recipients=recipients, channels=["email"])

    # when the batch runs
    answers = deliver_emails(result.deliveries)

    # then that one retries, and the other two go out on a new connection
    assert isinstance(answers[0], TransientError)
    assert _attempts(result.deliveries[0]) == [(AttemptResult.FAILED, 421)]
    assert [a["delivery"] for a in answers[1:]] == [DeliveryStatus.DELIVERED] * 2, answers
    assert smtp_sink.connections == 2

"""The notifications API for people: templates and categories, sending (validation, the
Idempotency-Key), reading a notification and its deliveries (and every channel's deliveries
under /api/v1/deliveries), the in-app inbox, preferences and the one-click unsubscribe, with
their scopes and the one JSON error shape.

No worker runs here: the jobs a send makes are run by calling the senders with them
(inbox.inbox_deliver, emails.emails_deliver), emails to a real SMTP server started by the
test (tests/smtp_sink.py)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from domain.access.models import Scopes
from domain.jobs.models import Job
from domain.notifications import catalogue, emails, inbox, preferences
from domain.notifications.catalogue import NotificationTemplate
from domain.notifications.models import (
    Delivery,
    InboxCounter,
    InboxItem,
    Message,
    Notification,
    RecipientPreference,
    WebhookEndpoint,
    new_secret,
)
from domain.notifications.notification_types import SECURITY_ALERT
from domain.notifications.sending import NO_ADDRESS
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

NOTIFICATIONS = "notification-list"
DELIVERIES = "delivery-list"
ALERT = {"title": "New sign-in", "message": "Someone signed in from a new device.",
         "ip_address": "203.0.113.7", "occurred_at": "2026-11-28T09:00:00Z"}
COMMENT = {"thread_id": "t-1", "thread_title": "Launch plan", "author": "Ada",
           "excerpt": "Looks good."}
NOTIFICATION_FIELDS = {"id", "template", "category", "channels", "context", "recipients_count",
                       "event", "created_at", "url", "deliveries"}
NOTIFICATION_DELIVERY_FIELDS = {"id", "channel", "recipient_id", "address", "status", "reason",
                                "attempts", "delivered_at", "last_error", "digest", "url"}
ITEM_FIELDS = {"id", "recipient_id", "notification", "template", "category", "title", "body",
               "data", "state", "created_at", "read_at", "archived_at"}


@pytest.fixture
def writer(make_client) -> APIClient:
    return make_client([Scopes.NOTIFICATIONS_WRITE], name="writer")


@pytest.fixture
def reader(make_client) -> APIClient:
    return make_client([Scopes.NOTIFICATIONS_READ], name="reader")


@pytest.fixture
def stranger(make_client) -> APIClient:
    """A key with every scope but the notifications' (and admin)."""
    return make_client([Scopes.EVENTS_PUBLISH, Scopes.EVENTS_READ, Scopes.JOBS_READ,
                        Scopes.JOBS_WRITE, Scopes.WEBHOOKS_MANAGE], name="stranger")


def _send(client, template: str = "security_alert", context: dict | None = None,
          recipients: list | None = None, headers: dict | None = None, **fields):
    body = {"template": template, "context": ALERT if context is None else context,
            "recipients": [{"id": "u1", "email": "u1@example.com"}]
            if recipients is None else recipients, **fields}
    return client.post(reverse(NOTIFICATIONS), body, format="json", headers=headers)


def _sent(client, **kwargs) -> dict:
    response = _send(client, **kwargs)
    assert response.status_code == 202, response.content
    return response.json()


def _jobs(notification_id: str, kind: str) -> list[Job]:
    ids = set(Delivery.objects.filter(notification_id=notification_id)
              .values_list("job_id", flat=True))
    return list(Job.objects.filter(kind=kind, pk__in=ids).order_by("created_at"))


def _to_inbox(notification_id: str) -> None:
    """What the worker does with the notification's in-app jobs."""
    inbox.inbox_deliver(_jobs(notification_id, "inbox_delivery"))


# --- GET /api/v1/notification-templates, /notification-categories ------------------------------

def test_templates_list_their_category_channels_schema_and_digest(reader):
    # when the templates are listed
    response = reader.get(reverse("notification-template-list"))

    # then each is there with its category (and its required flag), channels, schema, example
    assert response.status_code == 200, response.content
    by_name = {t["name"]: t for t in response.json()}
    assert {"security_alert", "comment_added"} <= set(by_name)
    alert = by_name["security_alert"]
    assert set(alert) == {"name", "description", "category", "channels", "schema", "example",
                          "digest"}
    assert alert["category"] == {"name": "security", "required": True,
                                 "description": catalogue.get_category("security").description}
    assert alert["channels"] == ["email", "in_app"]
    assert alert["schema"] == SECURITY_ALERT.schema
    assert alert["example"] == SECURITY_ALERT.example
    assert alert["digest"] is None
    # and a digest template says its window and key
    comment = by_name["comment_added"]
    assert comment["category"]["required"] is False
    assert comment["digest"] == {"window_seconds": 600, "key": "thread_id"}


def test_a_template_lists_the_digest_window_in_force(reader, settings):
    # given an operator's window for comment_added
    settings.NOTIFICATION_DIGEST_WINDOWS = {"comment_added": 120}

    # then the listing says that window, not the code's
    by_name = {t["name"]: t for t in reader.get(reverse("notification-template-list")).json()}
    assert by_name["comment_added"]["digest"] == {"window_seconds": 120, "key": "thread_id"}


def test_categories_list_with_their_templates(writer):
    response = writer.get(reverse("notification-category-list"))
    assert response.status_code == 200, response.content
    by_name = {c["name"]: c for c in response.json()}
    assert by_name["security"]["required"] is True
    assert "security_alert" in by_name["security"]["templates"]
    assert by_name["comments"] == {
        "name": "comments", "required": False, "templates": ["comment_added"],
        "description": catalogue.get_category("comments").description}
    assert [c["name"] for c in response.json()] == sorted(by_name)


@pytest.mark.parametrize("name", ["notification-template-list", "notification-category-list"])
def test_templates_and_categories_need_a_notifications_scope(stranger, name):
    assert_error(APIClient().get(reverse(name)), 401, "not_authenticated")
    error = assert_error(stranger.get(reverse(name)), 403, "permission_denied")
    assert "notifications:read" in error["message"]


# --- POST /api/v1/notifications --------------------------------------------------------------

def test_send_answers_202_with_one_delivery_per_recipient_and_channel(writer):
    # when a client sends a security alert to a recipient with an email and one without
    response = _send(writer, recipients=[{"id": "u1", "email": "u1@example.com"},
                                         {"id": "u2", "email": None}, {"id": "u3"}])

    # then it is 202 with the notification and its deliveries in the request's order
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == NOTIFICATION_FIELDS
    assert (body["template"], body["category"]) == ("security_alert", "security")
    assert body["channels"] == ["email", "in_app"]
    assert body["context"] == ALERT and body["recipients_count"] == 3
    assert body["event"] is None
    assert body["url"].endswith(reverse("notification-detail", args=[body["id"]]))
    deliveries = body["deliveries"]
    assert all(set(d) == NOTIFICATION_DELIVERY_FIELDS for d in deliveries)
    assert [(d["recipient_id"], d["channel"], d["status"]) for d in deliveries] == [
        ("u1", "email", "pending"), ("u1", "in_app", "pending"),
        ("u2", "email", "skipped"), ("u2", "in_app", "pending"),
        ("u3", "email", "skipped"), ("u3", "in_app", "pending")]
    assert [d["address"] for d in deliveries] == ["u1@example.com", None, "", None, "", None]
    assert [d["reason"] for d in deliveries if d["status"] == "skipped"] == [NO_ADDRESS] * 2
    assert deliveries[0]["url"].endswith(reverse("delivery-detail", args=[deliveries[0]["id"]]))
    # and the rows are the caller's, with a job for each pending email delivery and one for
    # the in-app deliveries (written a chunk at a time)
    notification = Notification.objects.get(pk=body["id"])
    assert notification.api_key_id == writer.api_key.pk
    assert Delivery.objects.filter(notification=notification).count() == 6
    assert len(_jobs(body["id"], "email_delivery")) == 1
    assert len(_jobs(body["id"], "inbox_delivery")) == 1


def test_send_on_some_channels_only(writer):
    body = _sent(writer, channels=["in_app"])
    assert body["channels"] == ["in_app"]
    assert [d["channel"] for d in body["deliveries"]] == ["in_app"]


def test_a_digest_templates_email_names_its_digest(writer):
    body = _sent(writer, template="comment_added", context=COMMENT)
    email, in_app = body["deliveries"]
    assert email["channel"] == "email" and uuid.UUID(email["digest"])
    assert in_app["digest"] is None


def test_send_needs_the_write_scope(reader, stranger):
    assert_error(_send(APIClient()), 401, "not_authenticated")
    for client in (reader, stranger):
        error = assert_error(_send(client), 403, "permission_denied")
        assert "notifications:write" in error["message"]
    assert not Notification.objects.exists()


@pytest.mark.parametrize(("fields", "code"), [
    ({"template": "no_such_template"}, "unknown_template"),
    ({"channels": ["sms"]}, "unsupported_channel"),
    ({"recipients": []}, "no_recipients"),
    ({"context": {"title": "x"}}, "invalid_context"),
    ({"context": ["not", "an", "object"]}, "invalid_context"),
    ({"recipients": [{"id": "a"}, {"id": "b"}, {"id": "a", "email": "a@example.com"}]},
     "invalid_recipients"),
    ({"recipients": [{"id": "a", "email": "not an address"}]}, "invalid_recipients"),
])
def test_send_refusals_are_422_with_their_code_and_write_nothing(writer, fields, code):
    body = {"template": "security_alert", "context": ALERT,
            "recipients": [{"id": "u1", "email": "u1@example.com"}], **fields}
    response = writer.post(reverse(NOTIFICATIONS), body, format="json")
    assert_error(response, 422, code)
    assert not Notification.objects.exists() and not Delivery.objects.exists()
    assert not Job.objects.exists()


def test_invalid_recipients_are_each_named_by_index(writer):
    response = _send(writer, recipients=[{"id": "a"}, {"id": "b", "email": "b@"},
                                         {"id": "a"}, {"id": "c", "email": "c@example.com"}])
    details = assert_error(response, 422, "invalid_recipients")["details"]["recipients"]
    assert {index: e["code"] for index, e in details.items()} == {
        "1": "invalid_email", "2": "duplicate_recipient"}


def test_too_many_recipients_is_refused_before_validating_each(writer, settings):
    # given 1,001 recipients, several of them invalid or duplicated
    recipients = [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(1000)]
    recipients += [{"id": "u1", "email": "nope"}]
    assert settings.NOTIFICATIONS_MAX_RECIPIENTS == 1000

    # when they are sent to
    response = _send(writer, recipients=recipients)

    # then it is the size that is refused, and nothing was written
    error = assert_error(response, 422, "too_many_recipients")
    assert error["details"] == {"limit": 1000, "received": 1001}
    assert not Notification.objects.exists() and not Delivery.objects.exists()
    # (malformed items too: the count comes first)
    response = _send(writer, recipients=[42] * 1001)
    assert_error(response, 422, "too_many_recipients")


def test_a_thousand_recipients_are_sent_to(writer):
    recipients = [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(1000)]
    body = _sent(writer, recipients=recipients, channels=["in_app"])
    assert body["recipients_count"] == 1000 and len(body["deliveries"]) == 1000
    assert [d["recipient_id"] for d in body["deliveries"]] == [r["id"] for r in recipients]


def test_a_missing_template_variable_is_422_missing_variable(writer, monkeypatch):
    # given security_alert registered with a schema that lets occurred_at out, which its
    # text uses
    loose = NotificationTemplate(
        name="security_alert", category="security", channels=("email", "in_app"),
        description="loose", schema={**SECURITY_ALERT.schema, "required": ["title", "message"]},
        example=SECURITY_ALERT.example)
    monkeypatch.setitem(catalogue._templates, "security_alert", loose)

    # when a context without it is sent
    context = {"title": "t", "message": "m"}
    error = assert_error(_send(writer, context=context), 422, "missing_variable")

    # then the variable is named, and nothing was written
    assert error["details"]["variable"] == "occurred_at"
    assert not Notification.objects.exists()


@pytest.mark.parametrize("body", [
    {"template": 1, "context": ALERT, "recipients": [{"id": "u1"}]},
    {"template": "security_alert", "context": ALERT, "recipients": [{"id": 1}]},
    {"template": "security_alert", "context": ALERT, "recipients": [{"id": ""}]},
    {"template": "security_alert", "context": ALERT, "recipients": [{"id": "x" * 201}]},
    {"template": "security_alert", "context": ALERT, "recipients": [{"id": "u", "email": 7}]},
    {"template": "security_alert", "context": ALERT, "recipients": "u1"},
    {"template": "security_alert", "context": ALERT, "recipients": [{"id": "u"}],
     "channels": [1]},
    {"template": "security_alert", "recipients": [{"id": "u1"}]},
    ["not", "an", "object"],
])
def test_a_malformed_send_is_422_validation_failed(writer, body):
    response = writer.post(reverse(NOTIFICATIONS), body, format="json")
    assert_error(response, 422, "validation_failed")
    assert not Notification.objects.exists()


def test_a_recipient_id_of_200_characters_is_taken(writer):
    body = _sent(writer, recipients=[{"id": "x" * 200}], channels=["in_app"])
    assert body["deliveries"][0]["recipient_id"] == "x" * 200


def test_an_idempotent_replay_answers_the_first_notification_with_200(writer):
    # given a send with an Idempotency-Key
    headers = {"Idempotency-Key": "send-1"}
    first = _send(writer, headers=headers)
    assert first.status_code == 202, first.content
    assert "Idempotent-Replayed" not in first

    # when the same request is sent again
    again = _send(writer, headers=headers)

    # then it is 200, marked as a replay, with the same notification and deliveries
    assert again.status_code == 200, again.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert [d["id"] for d in again.json()["deliveries"]] == [
        d["id"] for d in first.json()["deliveries"]]
    assert Notification.objects.count() == 1 and Delivery.objects.count() == 2


def test_an_idempotency_key_with_another_body_is_409(writer):
    first = _sent(writer, headers={"Idempotency-Key": "send-1"})
    response = _send(writer, headers={"Idempotency-Key": "send-1"},
                     recipients=[{"id": "someone-else"}])
    error = assert_error(response, 409, "idempotency_key_reused")
    assert error["details"] == {"notification": first["id"]}
    assert Notification.objects.count() == 1


def test_idempotency_keys_are_per_api_key(writer, make_client):
    other = make_client([Scopes.NOTIFICATIONS_WRITE], name="other")
    first = _sent(writer, headers={"Idempotency-Key": "k"})
    second = _sent(other, headers={"Idempotency-Key": "k"})
    assert first["id"] != second["id"]


def test_an_idempotency_key_over_255_characters_is_422(writer):
    response = _send(writer, headers={"Idempotency-Key": "k" * 256})
    assert_error(response, 422, "invalid_idempotency_key")
    assert not Notification.objects.exists()


# --- GET /api/v1/notifications[/{id}] --------------------------------------------------------

def test_read_a_notification_with_its_deliveries(writer, reader, make_client):
    # given a sent notification whose in-app deliveries were written to the inboxes
    sent = _sent(writer, recipients=[{"id": "u1", "email": "u1@example.com"}, {"id": "u2"}])
    _to_inbox(sent["id"])
    url = reverse("notification-detail", args=[sent["id"]])

    # when the key that sent it reads it
    response = writer.get(url)

    # then it has its deliveries as they are now
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == NOTIFICATION_FIELDS and body["id"] == sent["id"]
    rows = {(d["recipient_id"], d["channel"]): d for d in body["deliveries"]}
    assert rows[("u1", "in_app")]["status"] == "delivered"
    assert rows[("u1", "in_app")]["attempts"] == 1
    assert rows[("u1", "in_app")]["delivered_at"] is not None
    assert rows[("u1", "email")]["status"] == "pending"
    assert rows[("u2", "email")]["status"] == "skipped"
    assert rows[("u2", "email")]["reason"] == NO_ADDRESS
    # and another key does not see it (404, as for none), an admin key does
    assert_error(reader.get(url), 404, "not_found")
    assert make_client([Scopes.ADMIN, Scopes.NOTIFICATIONS_READ], name="admin").get(
        url).status_code == 200


def test_reading_a_notification_needs_a_notifications_scope(writer, stranger):
    url = reverse("notification-detail", args=[_sent(writer)["id"]])
    assert_error(APIClient().get(url), 401, "not_authenticated")
    assert_error(stranger.get(url), 403, "permission_denied")
    assert_error(writer.get(reverse("notification-detail", args=[uuid.uuid4()])), 404,
                 "not_found")


def test_notifications_list_the_keys_own_newest_first_with_filters(writer, make_client):
    first = _sent(writer)
    second = _sent(writer, template="comment_added", context=COMMENT)
    _sent(make_client([Scopes.NOTIFICATIONS_WRITE], name="other"))
    url = reverse(NOTIFICATIONS)

    def ids(**query) -> list[str]:
        response = writer.get(url, query)
        assert response.status_code == 200, response.content
        assert "deliveries" not in response.json()["results"][0] if \
            response.json()["results"] else True
        return [n["id"] for n in response.json()["results"]]

    assert ids() == [second["id"], first["id"]]
    assert ids(template="security_alert") == [first["id"]]
    assert ids(category="comments") == [second["id"]]
    assert ids(template="nothing") == []
    # a page at a time
    page = writer.get(url, {"limit": 1}).json()
    assert [n["id"] for n in page["results"]] == [second["id"]]
    assert [n["id"] for n in writer.get(page["next"]).json()["results"]] == [first["id"]]
    assert_error(writer.get(url, {"limit": 0}), 422, "validation_failed")
    assert_error(writer.get(url, {"cursor": "!!!!"}), 422, "invalid_cursor")


# --- GET /api/v1/deliveries: every channel ---------------------------------------------------

def _webhook_delivery(api_key) -> Delivery:
    now = timezone.now()
    endpoint = WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", api_key=api_key,
                                              secret=new_secret(), created_at=now,
                                              updated_at=now)
    message = Message.objects.create(event_id=uuid.uuid4(), type="demo.ping", data={},
                                     timestamp=now, created_at=now - timedelta(minutes=1))
    return Delivery.objects.create(message=message, endpoint=endpoint, api_key=api_key,
                                   created_at=now - timedelta(minutes=1))


def test_deliveries_filter_by_channel_and_recipient(make_client):
    # given a key's webhook delivery and a notification to two recipients
    client = make_client([Scopes.NOTIFICATIONS_WRITE, Scopes.NOTIFICATIONS_READ], name="both")
    webhook = _webhook_delivery(client.api_key)
    sent = _sent(client, recipients=[{"id": "u1", "email": "u1@example.com"}, {"id": "u2"}])
    ids = {(d["recipient_id"], d["channel"]): d["id"] for d in sent["deliveries"]}
    url = reverse(DELIVERIES)

    def listed(**query) -> list[str]:
        response = client.get(url, query)
        assert response.status_code == 200, response.content
        return [d["id"] for d in response.json()["results"]]

    # then each filter narrows the list, newest first
    assert len(listed()) == 5
    assert listed(channel="webhook") == [str(webhook.pk)]
    assert listed(channel="email") == [ids[("u2", "email")], ids[("u1", "email")]]
    assert listed(recipient="u1") == [ids[("u1", "in_app")], ids[("u1", "email")]]
    assert listed(recipient="u2", channel="in_app") == [ids[("u2", "in_app")]]
    assert listed(recipient="u2", status="skipped") == [ids[("u2", "email")]]
    assert len(listed(notification=sent["id"])) == 4
    assert listed(recipient="nobody") == []
    for name, value in (("channel", "sms"), ("channel", ""), ("recipient", ""),
                        ("recipient", "x" * 201), ("notification", "nope")):
        assert name in assert_error(client.get(url, {name: value}), 422,
                                    "validation_failed")["details"]


def test_a_notification_delivery_reads_with_its_channel_fields(writer, reader, make_client):
    # given a comment sent by email (a digest) to a recipient
    sent = _sent(writer, template="comment_added", context=COMMENT)
    email = sent["deliveries"][0]
    # and a reader that may read every key's rows (admin) with notifications:read
    admin = make_client([Scopes.ADMIN, Scopes.NOTIFICATIONS_READ], name="admin")

    # when the delivery is read
    response = admin.get(reverse("delivery-detail", args=[email["id"]]))

    # then the notification's fields are set and the webhook's are null
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["channel"] == "email" and body["recipient_id"] == "u1"
    assert body["address"] == "u1@example.com"
    assert body["notification"] == sent["id"] and body["digest"] == email["digest"]
    assert body["reason"] == "" and body["status"] == "pending"
    assert (body["message_id"], body["event"], body["event_type"], body["endpoint"]) == (
        None, None, None, None)
    # and notifications:write alone does not read deliveries; another key's is a 404
    assert_error(writer.get(reverse("delivery-detail", args=[email["id"]])), 403,
                 "permission_denied")
    assert_error(reader.get(reverse("delivery-detail", args=[email["id"]])), 404, "not_found")


def test_email_attempts_carry_the_smtp_reply(make_client, smtp_sink):
    # given two emails sent through a real SMTP server: one accepted, one refused for good
    client = make_client([Scopes.NOTIFICATIONS_WRITE, Scopes.NOTIFICATIONS_READ], name="both")
    smtp_sink.script("bad@example.com", rcpt=["550 5.1.1 No such user"])
    sent = _sent(client, channels=["email"], recipients=[
        {"id": "good", "email": "good@example.com"}, {"id": "bad", "email": "bad@example.com"}])
    emails.emails_deliver(_jobs(sent["id"], "email_delivery"))
    good, bad = (d["id"] for d in sent["deliveries"])

    # when their attempts are read
    accepted = client.get(reverse("delivery-attempts", args=[good]))
    refused = client.get(reverse("delivery-attempts", args=[bad]))

    # then each has the SMTP code and reply text, and no HTTP status
    assert accepted.status_code == 200, accepted.content
    [attempt] = accepted.json()
    assert attempt["outcome"] == "delivered" and attempt["smtp_code"] == 250
    assert attempt["http_status"] is None and attempt["response_excerpt"]
    [attempt] = refused.json()
    assert attempt["outcome"] == "gave_up" and attempt["smtp_code"] == 550
    assert "No such user" in attempt["response_excerpt"]
    assert client.get(reverse("delivery-detail", args=[bad])).json()["status"] == "failed"
    assert len(smtp_sink.messages_to("good@example.com")) == 1


# --- The inbox -------------------------------------------------------------------------------

def _inbox(client, recipient: str = "u1", **query):
    return client.get(reverse("inbox", args=[recipient]), query)


def _mark(client, action: str, item_id: str, recipient: str = "u1"):
    return client.post(reverse(f"inbox-item-{action}", args=[recipient, item_id]))


@pytest.fixture
def three_items(writer) -> list[str]:
    """Three in-app notifications to u1 (and one to u2), written to the inboxes: u1's item
    ids, newest first."""
    for n in range(3):
        sent = _sent(writer, channels=["in_app"], context={**ALERT, "title": f"Alert {n}"},
                     recipients=[{"id": "u1"}] + ([{"id": "u2"}] if n == 0 else []))
        _to_inbox(sent["id"])
    items = InboxItem.objects.filter(recipient_id="u1").order_by("-created_at", "-id")
    return [str(i.pk) for i in items]


def test_the_inbox_lists_items_newest_first_with_the_unread_count(writer, reader, three_items):
    # when u1's inbox is read (with the read scope, and with the write scope)
    for client in (reader, writer):
        response = _inbox(client)

        # then it has the three items, newest first, and the unread count
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"unread_count", "next", "previous", "results"}
        assert body["unread_count"] == 3
        assert [i["id"] for i in body["results"]] == three_items
        item = body["results"][0]
        assert set(item) == ITEM_FIELDS
        assert (item["title"], item["state"], item["recipient_id"]) == ("Alert 2", "unread", "u1")
        assert "Someone signed in" in item["body"]
        assert item["data"]["title"] == "Alert 2" and item["template"] == "security_alert"
        assert item["read_at"] is None and item["archived_at"] is None
    # and an inbox nothing was sent to is empty
    assert _inbox(reader, "nobody").json() == {"unread_count": 0, "next": None,
                                               "previous": None, "results": []}


def test_inbox_states_and_counts_through_the_api(writer, reader, three_items):
    newest, middle, oldest = three_items

    # when the newest is read, the middle archived
    read = _mark(writer, "read", newest)
    archived = _mark(writer, "archive", middle)

    # then each answer has the item and the count after it
    assert read.status_code == 200, read.content
    assert read.json()["item"]["state"] == "read" and read.json()["item"]["read_at"]
    assert read.json()["unread_count"] == 2
    assert archived.json()["item"]["state"] == "archived" and archived.json()["unread_count"] == 1

    # and each state lists its own; no state lists unread and read, not archived
    def listed(**query) -> tuple[list[str], int]:
        body = _inbox(reader, **query).json()
        return [i["id"] for i in body["results"]], body["unread_count"]

    assert listed(state="unread") == ([oldest], 1)
    assert listed(state="read") == ([newest], 1)
    assert listed(state="archived") == ([middle], 1)
    assert listed() == ([newest, oldest], 1)

    # when the same move is made twice, nothing more changes
    assert _mark(writer, "read", newest).json()["unread_count"] == 1
    # an archived item marked unread comes back unread; a read one too
    back = _mark(writer, "unread", middle).json()
    assert back["item"]["state"] == "unread" and back["item"]["archived_at"] is None
    assert back["unread_count"] == 2
    assert _mark(writer, "unread", newest).json()["unread_count"] == 3
    assert InboxCounter.objects.get(recipient_id="u1").unread == 3


def test_read_all_marks_every_unread_item_read(writer, three_items):
    _mark(writer, "archive", three_items[0])

    response = writer.post(reverse("inbox-read-all", args=["u1"]))

    assert response.status_code == 200, response.content
    assert response.json() == {"marked_read": 2, "unread_count": 0}
    assert _inbox(writer, state="unread").json()["results"] == []
    assert len(_inbox(writer, state="read").json()["results"]) == 2
    # another recipient's items are untouched, and a second read-all changes nothing
    assert _inbox(writer, "u2").json()["unread_count"] == 1
    assert writer.post(reverse("inbox-read-all", args=["u1"])).json() == {
        "marked_read": 0, "unread_count": 0}


def test_an_item_of_another_recipient_is_404(writer, three_items):
    for action in ("read", "unread", "archive"):
        assert_error(_mark(writer, action, three_items[0], recipient="u2"), 404, "not_found")
        assert_error(_mark(writer, action, str(uuid.uuid4())), 404, "not_found")
    assert _inbox(writer).json()["unread_count"] == 3


def test_the_inbox_pages_with_a_cursor(writer, three_items):
    page = _inbox(writer, limit=2).json()
    assert [i["id"] for i in page["results"]] == three_items[:2] and page["unread_count"] == 3
    rest = writer.get(page["next"]).json()
    assert [i["id"] for i in rest["results"]] == three_items[2:]
    assert rest["next"] is None and rest["unread_count"] == 3
    assert [i["id"] for i in writer.get(rest["previous"]).json()["results"]] == three_items[:2]


@pytest.mark.parametrize(("query", "name"), [({"state": "deleted"}, "state"),
                                             ({"state": ""}, "state"), ({"limit": 0}, "limit"),
                                             ({"limit": 501}, "limit")])
def test_a_bad_inbox_filter_is_422(reader, query, name):
    assert name in assert_error(_inbox(reader, **query), 422, "validation_failed")["details"]


@pytest.mark.parametrize("recipient", ["x" * 201, "a\x00b"])
def test_a_recipient_id_a_send_refuses_is_422_in_a_path(writer, recipient):
    for response in (_inbox(writer, recipient),
                     writer.post(reverse("inbox-read-all", args=[recipient])),
                     writer.get(reverse("recipient-preferences", args=[recipient])),
                     _put(writer, {}, recipient=recipient),
                     _mark(writer, "read", str(uuid.uuid4()), recipient=recipient)):
        assert "recipient_id" in assert_error(response, 422, "validation_failed")["details"]


def test_inbox_scopes(reader, stranger, three_items):
    assert_error(APIClient().get(reverse("inbox", args=["u1"])), 401, "not_authenticated")
    assert_error(_inbox(stranger), 403, "permission_denied")
    # reading is not changing: notifications:read cannot move items
    for response in (_mark(reader, "read", three_items[0]),
                     reader.post(reverse("inbox-read-all", args=["u1"]))):
        assert "notifications:write" in assert_error(response, 403,
                                                     "permission_denied")["message"]
    assert_error(APIClient().post(reverse("inbox-read-all", args=["u1"])), 401,
                 "not_authenticated")
    assert _inbox(reader).json()["unread_count"] == 3


# --- Preferences -----------------------------------------------------------------------------

def _preferences(client, recipient: str = "u1"):
    return client.get(reverse("recipient-preferences", args=[recipient]))


def _put(client, categories, recipient: str = "u1"):
    return client.put(reverse("recipient-preferences", args=[recipient]),
                      {"categories": categories}, format="json")


def _channels(body: dict) -> dict[str, dict[str, bool]]:
    return {c["name"]: c["channels"] for c in body["categories"]}


def test_preferences_default_to_every_category_on_every_channel(reader):
    response = _preferences(reader)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["recipient_id"] == "u1"
    names = [c.name for c in catalogue.categories()]
    assert [c["name"] for c in body["categories"]] == names
    assert all(c["channels"] == {"email": True, "in_app": True} for c in body["categories"])
    security = next(c for c in body["categories"] if c["name"] == "security")
    assert security["required"] is True and security["description"]


def test_put_preferences_replaces_the_choices(writer, reader):
    # when a recipient turns comments off by email and orders off in-app
    response = _put(writer, {"comments": {"email": False}, "orders": {"in_app": False,
                                                                     "email": True}})

    # then the answer and a later read say so, other categories and channels on
    assert response.status_code == 200, response.content
    expected = {"comments": {"email": False, "in_app": True},
                "orders": {"email": True, "in_app": False},
                "security": {"email": True, "in_app": True}}
    assert _channels(response.json()) == expected
    assert _channels(_preferences(reader).json()) == expected
    # and a second PUT replaces them all (what it does not name is on again)
    assert _channels(_put(writer, {"orders": {"email": False}}).json())["comments"] == {
        "email": True, "in_app": True}
    assert RecipientPreference.objects.filter(recipient_id="u1").count() == 1
    # and another recipient's are their own
    assert _channels(_preferences(reader, "u2").json())["orders"]["email"] is True


def test_an_opted_out_channel_is_skipped_when_sent(writer):
    # given u1 has turned comments off by email
    assert _put(writer, {"comments": {"email": False}}).status_code == 200
    sent = _sent(writer, template="comment_added", context=COMMENT)

    # when the email job runs (no SMTP server needed: it is not sent)
    emails.emails_deliver(_jobs(sent["id"], "email_delivery"))

    # then the delivery is skipped with the reason
    email = writer.get(reverse("notification-detail", args=[sent["id"]])).json()[
        "deliveries"][0]
    assert email["status"] == "skipped"
    assert email["reason"] == preferences.opted_out_reason("comments", "email")


def test_a_required_category_cannot_be_turned_off(writer):
    response = _put(writer, {"security": {"email": False}, "comments": {"email": False}})
    error = assert_error(response, 422, "required_category")
    assert list(error["details"]["preferences"]) == ["security.email"]
    # nothing was saved, not even the other choice
    assert not RecipientPreference.objects.exists()
    # true for a required category is accepted (it changes nothing)
    assert _put(writer, {"security": {"email": True}}).status_code == 200


@pytest.mark.parametrize(("categories", "key"), [
    ({"newsletters": {"email": False}}, "newsletters"),
    ({"comments": {"sms": False}}, "comments.sms"),
    ({"comments": {"webhook": False}}, "comments.webhook"),
])
def test_an_unknown_category_or_channel_is_422_invalid_preferences(writer, categories, key):
    error = assert_error(_put(writer, categories), 422, "invalid_preferences")
    assert key in error["details"]["preferences"]
    assert not RecipientPreference.objects.exists()


@pytest.mark.parametrize("body", [
    {}, {"categories": None}, {"categories": []}, {"categories": {"comments": False}},
    {"categories": {"comments": {"email": "false"}}}, {"categories": {"comments": {"email": 0}}},
    ["categories"],
])
def test_malformed_preferences_are_422_validation_failed(writer, body):
    response = writer.put(reverse("recipient-preferences", args=["u1"]), body, format="json")
    assert "categories" in assert_error(response, 422, "validation_failed")["details"]
    assert not RecipientPreference.objects.exists()


def test_preferences_scopes(reader, stranger):
    url = reverse("recipient-preferences", args=["u1"])
    assert_error(APIClient().get(url), 401, "not_authenticated")
    assert_error(stranger.get(url), 403, "permission_denied")
    assert "notifications:write" in assert_error(
        _put(reader, {"comments": {"email": False}}), 403, "permission_denied")["message"]
    assert not RecipientPreference.objects.exists()


# --- One-click unsubscribe -------------------------------------------------------------------

def _unsubscribe_url(recipient: str = "u1", category: str = "comments") -> str:
    token = preferences.unsubscribe_token(recipient_id=recipient, category=category)
    return reverse("unsubscribe", args=[token])


def test_one_click_unsubscribe_from_an_emails_link(writer, smtp_sink, settings):
    # given an email of a category that can be opted out of, with its List-Unsubscribe link
    settings.NOTIFICATIONS_PUBLIC_URL = "https://conveyor.example.com"
    sent = _sent(writer, template="comment_added", context=COMMENT, channels=["email"])
    emails.emails_deliver(_jobs(sent["id"], "email_delivery"))
    [message] = smtp_sink.messages_to("u1@example.com")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.fullmatch(r"<https://conveyor\.example\.com(/api/v1/unsubscribe/[^>]+)>",
                        message["List-Unsubscribe"].strip()).group(1)

    # when a mail client fetches it, then posts the RFC 8058 body, with no API key
    anonymous = APIClient()
    preview = anonymous.get(link)
    assert RecipientPreference.objects.count() == 0
    response = anonymous.post(link, "List-Unsubscribe=One-Click",
                              content_type="application/x-www-form-urlencoded")

    # then the fetch changed nothing and said what the post does; the post opted u1 out of
    # comments by email, and nothing else
    assert preview.status_code == 200, preview.content
    assert preview.json() == {"recipient_id": "u1", "category": "comments",
                              "channel": "email", "enabled": True}
    assert response.status_code == 200, response.content
    assert response.json() == {"recipient_id": "u1", "category": "comments",
                               "channel": "email", "enabled": False}
    assert list(RecipientPreference.objects.values_list(
        "recipient_id", "category", "channel", "enabled")) == [("u1", "comments", "email",
                                                                False)]
    # and the link read again says so; posting again changes nothing more
    assert anonymous.get(link).json()["enabled"] is False
    assert anonymous.post(link).status_code == 200
    assert RecipientPreference.objects.count() == 1


def test_unsubscribe_needs_no_csrf_token_nor_a_json_body():
    # a mail provider posts from its servers: no cookie, no CSRF token, a form body
    client = Client(enforce_csrf_checks=True)
    for body, content_type in (("List-Unsubscribe=One-Click",
                                "application/x-www-form-urlencoded"),
                               ("--b\r\nContent-Disposition: form-data; "
                                "name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n",
                                "multipart/form-data; boundary=b")):
        response = client.post(_unsubscribe_url(), body, content_type=content_type)
        assert response.status_code == 200, response.content
    assert RecipientPreference.objects.get().enabled is False


def test_unsubscribe_keeps_the_other_choices(writer):
    _put(writer, {"orders": {"in_app": False}})
    assert APIClient().post(_unsubscribe_url()).status_code == 200
    assert _channels(_preferences(writer).json()) == {
        "comments": {"email": False, "in_app": True},
        "orders": {"email": True, "in_app": False},
        "security": {"email": True, "in_app": True}}


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_bad_unsubscribe_token_is_422(method):
    good = preferences.unsubscribe_token(recipient_id="u1", category="comments")
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")
    # another recipient's data under u1's signature
    theirs = preferences.unsubscribe_token(recipient_id="u2", category="comments")
    swapped = theirs.split(":", 1)[0] + ":" + good.split(":", 1)[1]
    assert swapped != theirs
    for token in ("nonsense", forged, swapped, "x" * 500):
        response = getattr(APIClient(), method)(reverse("unsubscribe", args=[token]))
        assert_error(response, 422, "invalid_unsubscribe_token")
    assert not RecipientPreference.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_unsubscribing_from_a_required_category_is_422(method):
    response = getattr(APIClient(), method)(_unsubscribe_url(category="security"))
    assert_error(response, 422, "required_category")
    assert not RecipientPreference.objects.exists()


def test_a_token_of_a_category_no_longer_registered_is_422(monkeypatch):
    url = _unsubscribe_url(category="comments")
    monkeypatch.delitem(catalogue._categories, "comments")
    assert_error(APIClient().post(url), 422, "invalid_unsubscribe_token")
    assert not RecipientPreference.objects.exists()


def test_unsubscribe_ignores_an_api_key(writer):
    # the token is the authority: a key (even a bad one) neither helps nor hurts
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer not-a-key")
    assert bad.post(_unsubscribe_url()).status_code == 200
    assert writer.post(_unsubscribe_url("u9")).status_code == 200
    assert set(RecipientPreference.objects.values_list("recipient_id", flat=True)) == {
        "u1", "u9"}

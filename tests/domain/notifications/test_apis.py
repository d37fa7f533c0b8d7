"""The webhooks API: endpoints (register, read, list, change, delete, rotate the secret,
recover, test ping) and deliveries (list, filter, read, attempts), with their scopes and the
one JSON error shape. No worker runs here: deliveries and attempts are made with the ORM, and
the test ping goes to a real local receiver (tests/webhook_receiver.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from domain.access.models import Scopes
from domain.jobs.models import Job, JobStatus
from domain.notifications.models import (
    AttemptResult,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
    Message,
    WebhookEndpoint,
    new_secret,
)
from tests.conftest import assert_error
from tests.factories import JobFactory
from tests.webhook_receiver import Answer, Receiver

pytestmark = pytest.mark.django_db

ENDPOINTS = "webhook-endpoint-list"
DELIVERIES = "delivery-list"
# 127.0.0.1/32 is in WEBHOOK_ALLOWED_NETWORKS for the tests (config/settings/test.py); nothing
# listens on this port: no test here sends to it.
LOCAL_URL = "http://127.0.0.1:9/hook"

ENDPOINT_FIELDS = {
    "id", "url", "event_types", "description", "enabled", "state", "disabled_reason",
    "rate_limit", "consecutive_failures", "failing_since", "last_success_at",
    "last_failure_at", "circuit_open_until", "previous_secret_expires_at", "created_at",
    "updated_at", "deliveries",
}
DELIVERY_FIELDS = {
    "id", "channel", "message_id", "event", "event_type", "endpoint", "notification",
    "recipient_id", "address", "digest", "status", "reason", "attempts", "next_attempt_at",
    "last_attempt_at", "delivered_at", "last_error", "created_at", "attempts_url", "url",
}
ATTEMPT_FIELDS = {"number", "at", "outcome", "http_status", "smtp_code", "latency_ms",
                  "response_excerpt", "error_type", "error_message"}


@pytest.fixture
def manager(make_client):
    """A client with `webhooks:manage` only."""
    return make_client([Scopes.WEBHOOKS_MANAGE], name="manager")


def _detail(endpoint_id) -> str:
    return reverse("webhook-endpoint-detail", args=[endpoint_id])


def _create(client, **fields):
    return client.post(reverse(ENDPOINTS), {"url": LOCAL_URL, **fields}, format="json")


def _endpoint(api_key, **fields) -> WebhookEndpoint:
    """An endpoint made with the ORM (as the service would store it)."""
    now = timezone.now()
    return WebhookEndpoint.objects.create(**{
        "url": LOCAL_URL, "api_key": api_key, "secret": new_secret(), "created_at": now,
        "updated_at": now, **fields})


def _delivery(endpoint: WebhookEndpoint, status: str = DeliveryStatus.FAILED, *,
              created_at=None, event_id=None, type: str = "demo.ping", **fields) -> Delivery:
    """An event's message and its delivery to `endpoint`, made with the ORM (a test ping's
    message has no event: type="webhook.test")."""
    at = created_at or timezone.now()
    if event_id is None and type != "webhook.test":
        event_id = uuid.uuid4()
    message = Message.objects.create(event_id=event_id, type=type, data={"message": "hi"},
                                     timestamp=at, created_at=at)
    return Delivery.objects.create(message=message, endpoint=endpoint, status=status,
                                   created_at=at, api_key_id=endpoint.api_key_id, **fields)


def _close_to(text: str | None, expected, seconds: float = 5) -> bool:
    parsed = parse_datetime(text or "")
    return parsed is not None and abs((parsed - expected).total_seconds()) < seconds


# --- POST /api/v1/webhook-endpoints ----------------------------------------------------------

def test_create_answers_201_with_the_secret_once(manager):
    # when a client registers an endpoint
    response = _create(manager, event_types=["demo.ping"], description="orders",
                       rate_limit=10)

    # then it is 201 with every field and the secret, made by the server
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == ENDPOINT_FIELDS | {"secret"}
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 30
    assert body["url"] == LOCAL_URL
    assert body["event_types"] == ["demo.ping"]
    assert body["description"] == "orders"
    assert body["rate_limit"] == 10
    assert body["enabled"] is True and body["state"] == "active"
    assert body["disabled_reason"] == "" and body["consecutive_failures"] == 0
    assert body["previous_secret_expires_at"] is None
    assert body["deliveries"].endswith(f"{reverse(DELIVERIES)}?endpoint={body['id']}")
    # and the row is the caller's, with that secret
    endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert endpoint.api_key_id == manager.api_key.pk
    assert endpoint.secret == body["secret"]

    # and the secret is never shown again: not read, not listed, not in a PATCH's answer
    read = manager.get(_detail(body["id"]))
    listed = manager.get(reverse(ENDPOINTS))
    patched = manager.patch(_detail(body["id"]), {"description": "x"}, format="json")
    for answer in (read.json(), listed.json()["results"][0], patched.json()):
        assert set(answer) == ENDPOINT_FIELDS
        assert body["secret"] not in str(answer)


def test_create_defaults(manager):
    # when only a URL is given
    response = _create(manager)

    # then it subscribes to every type, without a rate limit, enabled
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["event_types"] is None and body["rate_limit"] is None
    assert body["description"] == "" and body["enabled"] is True


def test_create_with_an_empty_list_of_types_subscribes_to_every_type(manager):
    body = _create(manager, event_types=[]).json()
    assert body["event_types"] is None


def test_create_disabled_is_stored_disabled_by_its_owner(manager):
    # when an endpoint is registered disabled
    response = _create(manager, enabled=False)

    # then it is disabled, saying who did it
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["enabled"] is False and body["state"] == "disabled"
    assert body["disabled_reason"] == "disabled by its owner"


def test_a_server_only_event_type_can_be_subscribed_to(manager):
    # an owner wants to hear that another of its endpoints degrades
    response = _create(manager, event_types=["webhook_endpoint.degraded",
                                             "webhook_endpoint.disabled"])
    assert response.status_code == 201, response.content
    assert response.json()["event_types"] == ["webhook_endpoint.degraded",
                                              "webhook_endpoint.disabled"]


@pytest.mark.parametrize(("fields", "field"), [
    pytest.param({"url": "not a url"}, "url", id="not-a-url"),
    pytest.param({"url": ""}, "url", id="empty-url"),
    pytest.param({"url": None}, "url", id="null-url"),
    pytest.param({"event_types": ["no.such.type"]}, "event_types", id="unregistered-type"),
    pytest.param({"event_types": "demo.ping"}, "event_types", id="types-not-a-list"),
    pytest.param({"rate_limit": 0}, "rate_limit", id="rate-limit-0"),
    pytest.param({"rate_limit": -1}, "rate_limit", id="rate-limit-negative"),
    pytest.param({"rate_limit": 100_001}, "rate_limit", id="rate-limit-too-high"),
    pytest.param({"description": "x" * 501}, "description", id="description-too-long"),
    pytest.param({"enabled": "maybe"}, "enabled", id="enabled-not-a-boolean"),
])
def test_create_refuses_invalid_fields_with_422(manager, fields, field):
    # when a field is invalid
    response = _create(manager, **fields)

    # then it is 422 with the error under that field, and nothing is stored
    error = assert_error(response, 422, "validation_failed")
    assert field in error["details"], error
    assert not WebhookEndpoint.objects.exists()


def test_create_without_a_url_is_422(manager):
    response = manager.post(reverse(ENDPOINTS), {"event_types": ["demo.ping"]}, format="json")
    assert "url" in assert_error(response, 422, "validation_failed")["details"]


@pytest.mark.parametrize("url", [
    pytest.param("http://127.0.0.2/hook", id="loopback-outside-the-allowed-network"),
    pytest.param("http://10.0.0.1/hook", id="private"),
    pytest.param("http://169.254.169.254/latest/meta-data/", id="cloud-metadata"),
    pytest.param("https://[::1]/hook", id="ipv6-loopback"),
    pytest.param("ftp://127.0.0.1/hook", id="not-http"),
    pytest.param("http://user:pw@127.0.0.1/hook", id="credentials-in-the-url"),
])
def test_create_refuses_an_unsafe_url_with_422_unsafe_url(manager, url):
    # when the URL would reach an address the SSRF guard refuses (tests/domain/notifications/
    # test_ssrf.py goes deeper)
    response = _create(manager, url=url)

    # then it is 422 unsafe_url naming the URL, and nothing is stored
    error = assert_error(response, 422, "unsafe_url")
    assert error["details"] == {"url": url}
    assert not WebhookEndpoint.objects.exists()


def test_create_refuses_a_host_that_does_not_resolve(manager):
    response = _create(manager, url="https://no-such-host.invalid/hook")
    assert_error(response, 422, "unresolvable_url")
    assert not WebhookEndpoint.objects.exists()


def test_create_a_body_that_is_not_json_is_400(manager):
    response = manager.post(reverse(ENDPOINTS), "{not json", content_type="application/json")
    assert_error(response, 400, "malformed_json")


# --- GET /api/v1/webhook-endpoints[/{id}] ----------------------------------------------------

def test_read_an_endpoint(manager):
    # given an endpoint with a health record
    failing = timezone.now() - timedelta(hours=1)
    endpoint = _endpoint(manager.api_key, event_types=["demo.ping"], consecutive_failures=3,
                         failing_since=failing, last_failure_at=failing)

    # when it is read
    response = manager.get(_detail(endpoint.pk))

    # then it comes back as stored, without its secret
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == ENDPOINT_FIELDS
    assert body["id"] == str(endpoint.pk)
    assert body["consecutive_failures"] == 3
    assert _close_to(body["failing_since"], failing, 0.001)
    assert body["last_success_at"] is None


def test_list_shows_only_the_keys_own_endpoints_unless_admin(manager, make_client):
    # given an endpoint of this key and one of another key
    mine = _endpoint(manager.api_key)
    other = make_client([Scopes.WEBHOOKS_MANAGE], name="other")
    theirs = _endpoint(other.api_key)
    admin = make_client([Scopes.ADMIN], name="admin")

    def ids(client) -> set[str]:
        response = client.get(reverse(ENDPOINTS))
        assert response.status_code == 200, response.content
        return {e["id"] for e in response.json()["results"]}

    # then each key lists its own; an admin key lists both
    assert ids(manager) == {str(mine.pk)}
    assert ids(other) == {str(theirs.pk)}
    assert ids(admin) == {str(mine.pk), str(theirs.pk)}


def test_list_cursor_pagination_visits_every_endpoint_once_newest_first(manager):
    # given 7 endpoints made a second apart
    now = timezone.now()
    endpoints = [_endpoint(manager.api_key, created_at=now - timedelta(seconds=i))
                 for i in range(7)]

    # when following `next` links with limit=3
    seen, pages = [], 0
    response = manager.get(reverse(ENDPOINTS), {"limit": 3})
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        assert len(body["results"]) <= 3
        seen += [e["id"] for e in body["results"]]
        pages += 1
        if not body["next"]:
            break
        assert pages < 10, "pagination does not end"
        response = manager.get(body["next"])

    # then each came back once, newest first, in 3 pages, and `previous` leads back
    assert seen == [str(e.pk) for e in endpoints]
    assert pages == 3
    back = manager.get(body["previous"])
    assert [e["id"] for e in back.json()["results"]] == seen[3:6]


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=abc", "limit="])
def test_list_with_a_limit_out_of_range_is_422(manager, query):
    response = manager.get(f"{reverse(ENDPOINTS)}?{query}")
    assert list(assert_error(response, 422, "validation_failed")["details"]) == ["limit"]


def test_list_with_a_cursor_the_server_did_not_write_is_422(manager):
    response = manager.get(reverse(ENDPOINTS), {"cursor": "bm90LWEtY3Vyc29y"})
    assert_error(response, 422, "invalid_cursor")


def test_unknown_endpoint_is_404(manager):
    assert_error(manager.get(_detail(uuid.uuid4())), 404, "not_found")


def test_another_keys_endpoint_is_404_for_every_operation(manager, make_client):
    # given an endpoint of another key
    other = make_client([Scopes.WEBHOOKS_MANAGE], name="other")
    theirs = _endpoint(other.api_key)
    since = (timezone.now() - timedelta(days=1)).isoformat()

    # when this key reads, changes, deletes, rotates, recovers or pings it
    detail = _detail(theirs.pk)
    answers = [
        manager.get(detail),
        manager.patch(detail, {"description": "mine now"}, format="json"),
        manager.delete(detail),
        manager.post(reverse("webhook-endpoint-rotate-secret", args=[theirs.pk]), {},
                     format="json"),
        manager.post(reverse("webhook-endpoint-recover", args=[theirs.pk]),
                     {"since": since, "dry_run": True}, format="json"),
        manager.post(reverse("webhook-endpoint-test", args=[theirs.pk])),
    ]

    # then each is a 404, and nothing changed
    for response in answers:
        assert_error(response, 404, "not_found")
    stored = WebhookEndpoint.objects.get(pk=theirs.pk)
    assert (stored.description, stored.secret) == ("", theirs.secret)
    assert not Message.objects.exists()


# --- PATCH /api/v1/webhook-endpoints/{id} ----------------------------------------------------

def test_patch_changes_only_the_fields_given(manager):
    # given an endpoint
    endpoint = _endpoint(manager.api_key, event_types=["demo.ping"], description="before",
                         rate_limit=5)

    # when its URL and types change
    response = manager.patch(_detail(endpoint.pk), {
        "url": "http://127.0.0.1:10/other", "event_types": ["product.updated", "demo.ping"]},
        format="json")

    # then those changed, the rest did not, and updated_at moved
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["url"] == "http://127.0.0.1:10/other"
    assert body["event_types"] == ["demo.ping", "product.updated"]
    assert body["description"] == "before" and body["rate_limit"] == 5
    assert parse_datetime(body["updated_at"]) > endpoint.updated_at
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert stored.secret == endpoint.secret


def test_patch_clears_the_rate_limit_and_the_types_with_null(manager):
    endpoint = _endpoint(manager.api_key, event_types=["demo.ping"], rate_limit=5)
    response = manager.patch(_detail(endpoint.pk), {"rate_limit": None, "event_types": None},
                             format="json")
    assert response.status_code == 200, response.content
    assert response.json()["rate_limit"] is None and response.json()["event_types"] is None


@pytest.mark.parametrize("fields", [
    {"secret": "whsec_mine"}, {"state": "active"}, {"consecutive_failures": 0},
    {"description": "ok", "id": str(uuid.uuid4())},
])
def test_patch_with_an_unknown_or_read_only_field_is_422_naming_it(manager, fields):
    # given an endpoint
    endpoint = _endpoint(manager.api_key)

    # when a patch names a field that cannot be changed
    response = manager.patch(_detail(endpoint.pk), fields, format="json")

    # then it is 422 with the field under details.unknown, and nothing changed
    error = assert_error(response, 422, "validation_failed")
    assert error["details"]["unknown"] == sorted(set(fields) - {"description"})
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (stored.secret, stored.description) == (endpoint.secret, "")


@pytest.mark.parametrize("body", [{}, None])
def test_patch_with_nothing_to_change_is_422(manager, body):
    endpoint = _endpoint(manager.api_key)
    response = manager.patch(_detail(endpoint.pk), body, format="json")
    error = assert_error(response, 422, "validation_failed")
    assert "url" in error["details"]["fields"]


def test_patch_with_a_body_that_is_not_an_object_is_422(manager):
    endpoint = _endpoint(manager.api_key)
    response = manager.patch(_detail(endpoint.pk), ["url"], format="json")
    assert_error(response, 422, "validation_failed")


@pytest.mark.parametrize(("fields", "code"), [
    ({"url": "http://10.0.0.1/hook"}, "unsafe_url"),
    ({"event_types": ["no.such.type"]}, "validation_failed"),
    ({"rate_limit": 0}, "validation_failed"),
])
def test_patch_refuses_what_create_refuses(manager, fields, code):
    endpoint = _endpoint(manager.api_key)
    assert_error(manager.patch(_detail(endpoint.pk), fields, format="json"), 422, code)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).url == LOCAL_URL


def test_patch_enabled_false_disables_and_parks_waiting_deliveries(manager):
    # given an active endpoint with a pending, a retrying and a delivered delivery
    endpoint = _endpoint(manager.api_key)
    pending = _delivery(endpoint, DeliveryStatus.PENDING)
    retrying = _delivery(endpoint, DeliveryStatus.RETRYING, attempts=1)
    delivered = _delivery(endpoint, DeliveryStatus.DELIVERED, attempts=1)

    # when its owner disables it
    response = manager.patch(_detail(endpoint.pk), {"enabled": False}, format="json")

    # then it is disabled by its owner, and the waiting deliveries are parked (no attempt used)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["enabled"], body["state"]) == (False, "disabled")
    assert body["disabled_reason"] == "disabled by its owner"
    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert statuses == {pending.pk: "parked", retrying.pk: "parked", delivered.pk: "delivered"}
    assert Delivery.objects.get(pk=retrying.pk).attempts == 1


def test_patch_enabled_true_enables_and_resumes_parked_deliveries(
        manager, django_capture_on_commit_callbacks):
    # given an endpoint disabled after failures, with two parked deliveries
    since = timezone.now() - timedelta(days=6)
    endpoint = _endpoint(manager.api_key, enabled=False, state=EndpointState.DISABLED,
                         disabled_reason="every attempt failed for 5.0 days (40 in a row)",
                         consecutive_failures=40, failing_since=since)
    parked = [_delivery(endpoint, DeliveryStatus.PARKED, created_at=since + timedelta(hours=i))
              for i in range(2)]

    # when its owner enables it
    with django_capture_on_commit_callbacks(execute=False):
        response = manager.patch(_detail(endpoint.pk), {"enabled": True}, format="json")

    # then it is active with a clean record, and each parked delivery is pending with a job
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["enabled"], body["state"], body["disabled_reason"]) == (True, "active", "")
    assert body["consecutive_failures"] == 0 and body["failing_since"] is None
    for delivery in parked:
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING
        job = Job.objects.get(pk=delivery.job_id)
        assert job.kind == "webhook_delivery" and job.params == {"delivery": str(delivery.pk)}


def test_patch_enabled_true_on_an_active_endpoint_changes_nothing(manager):
    endpoint = _endpoint(manager.api_key)
    response = manager.patch(_detail(endpoint.pk), {"enabled": True}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["enabled"]) == ("active", True)


# --- DELETE /api/v1/webhook-endpoints/{id} ---------------------------------------------------

def test_delete_is_204_then_404_and_takes_its_deliveries(manager):
    # given an endpoint with a delivery and an attempt
    endpoint = _endpoint(manager.api_key)
    delivery = _delivery(endpoint, DeliveryStatus.FAILED, attempts=1)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, at=timezone.now(),
                                   outcome=AttemptResult.GAVE_UP, http_status=400)

    # when it is deleted
    response = manager.delete(_detail(endpoint.pk))

    # then it is 204 with no body, and it, its deliveries and attempts are gone
    assert response.status_code == 204, response.content
    assert response.content == b""
    assert_error(manager.get(_detail(endpoint.pk)), 404, "not_found")
    assert_error(manager.delete(_detail(endpoint.pk)), 404, "not_found")
    assert_error(manager.get(reverse("delivery-detail", args=[delivery.pk])), 404, "not_found")
    assert not DeliveryAttempt.objects.exists()


# --- Scopes and authentication ---------------------------------------------------------------

def _every_operation(endpoint_id, delivery_id) -> list[tuple[str, str, dict | None]]:
    since = (timezone.now() - timedelta(days=1)).isoformat()
    return [
        ("get", reverse(ENDPOINTS), None),
        ("post", reverse(ENDPOINTS), {"url": LOCAL_URL}),
        ("get", _detail(endpoint_id), None),
        ("patch", _detail(endpoint_id), {"description": "x"}),
        ("delete", _detail(endpoint_id), None),
        ("post", reverse("webhook-endpoint-rotate-secret", args=[endpoint_id]), {}),
        ("post", reverse("webhook-endpoint-recover", args=[endpoint_id]),
         {"since": since, "dry_run": True}),
        ("post", reverse("webhook-endpoint-test", args=[endpoint_id]), None),
        ("get", reverse(DELIVERIES), None),
        ("get", reverse("delivery-detail", args=[delivery_id]), None),
        ("get", reverse("delivery-attempts", args=[delivery_id]), None),
    ]


@pytest.mark.parametrize("scopes", [
    pytest.param([Scopes.NOTIFICATIONS_READ], id="notifications-read"),
    pytest.param([s for s in Scopes.values
                  if s not in (Scopes.WEBHOOKS_MANAGE, Scopes.ADMIN)], id="every-other-scope"),
])
def test_endpoints_need_webhooks_manage(make_client, scopes):
    # given a key without webhooks:manage, and an endpoint it owns
    client = make_client(scopes)
    endpoint = _endpoint(client.api_key)
    delivery = _delivery(endpoint)

    # when it calls any endpoint operation, then it is 403, and nothing changed
    for method, url, body in _every_operation(endpoint.pk, delivery.pk)[:8]:
        response = getattr(client, method)(url, body, format="json")
        assert_error(response, 403, "permission_denied")
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == endpoint.secret
    assert Delivery.objects.count() == 1


@pytest.mark.parametrize("scope", [Scopes.NOTIFICATIONS_READ, Scopes.WEBHOOKS_MANAGE])
def test_deliveries_are_readable_with_either_scope(make_client, scope):
    # given a key with one of the two scopes, and a delivery of its own with an attempt
    client = make_client([scope])
    delivery = _delivery(_endpoint(client.api_key), attempts=1)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, at=timezone.now(),
                                   outcome=AttemptResult.GAVE_UP)

    # then it lists, reads, and reads the attempts
    listed = client.get(reverse(DELIVERIES))
    assert listed.status_code == 200, listed.content
    assert [d["id"] for d in listed.json()["results"]] == [str(delivery.pk)]
    assert client.get(reverse("delivery-detail", args=[delivery.pk])).status_code == 200
    attempts = client.get(reverse("delivery-attempts", args=[delivery.pk]))
    assert attempts.status_code == 200 and len(attempts.json()) == 1


def test_deliveries_need_one_of_the_two_scopes(make_client):
    client = make_client([s for s in Scopes.values if s not in (
        Scopes.WEBHOOKS_MANAGE, Scopes.NOTIFICATIONS_READ, Scopes.ADMIN)])
    delivery = _delivery(_endpoint(client.api_key))
    for _method, url, _body in _every_operation(delivery.endpoint_id, delivery.pk)[8:]:
        assert_error(client.get(url), 403, "permission_denied")


@pytest.mark.parametrize(("credentials", "code"), [
    (None, "not_authenticated"),
    ("Bearer not-a-key", "authentication_failed"),
    ("Basic dXNlcjpwdw==", "authentication_failed"),
])
def test_without_a_valid_key_every_operation_is_401(credentials, code, manager):
    # given an endpoint and a delivery (of some key)
    endpoint = _endpoint(manager.api_key)
    delivery = _delivery(endpoint)
    client = APIClient()
    if credentials:
        client.credentials(HTTP_AUTHORIZATION=credentials)

    # when a request comes without a valid key, then it is 401 whatever it asks
    for method, url, body in _every_operation(endpoint.pk, delivery.pk):
        response = getattr(client, method)(url, body, format="json")
        assert_error(response, 401, code)
    assert WebhookEndpoint.objects.count() == 1


# --- POST /api/v1/webhook-endpoints/{id}/rotate-secret ---------------------------------------

def test_rotate_secret_answers_a_new_secret_and_keeps_the_old_for_24_hours(manager):
    # given an endpoint with its secret
    created = _create(manager).json()

    # when its secret is rotated without saying for how long the old one stays
    response = manager.post(reverse("webhook-endpoint-rotate-secret", args=[created["id"]]))

    # then the answer shows the new secret (once), and when the old one stops signing
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == ENDPOINT_FIELDS | {"secret"}
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    assert _close_to(body["previous_secret_expires_at"], timezone.now() + timedelta(hours=24))
    stored = WebhookEndpoint.objects.get(pk=created["id"])
    assert (stored.secret, stored.previous_secret) == (body["secret"], created["secret"])
    # and reading it shows neither
    read = manager.get(_detail(created["id"])).json()
    assert "secret" not in read and created["secret"] not in str(read)
    assert read["previous_secret_expires_at"] == body["previous_secret_expires_at"]


@pytest.mark.parametrize("overlap", [0, 60, 7 * 86400])
def test_rotate_secret_honours_overlap_seconds(manager, overlap):
    endpoint = _endpoint(manager.api_key)
    response = manager.post(reverse("webhook-endpoint-rotate-secret", args=[endpoint.pk]),
                            {"overlap_seconds": overlap}, format="json")
    assert response.status_code == 200, response.content
    assert _close_to(response.json()["previous_secret_expires_at"],
                     timezone.now() + timedelta(seconds=overlap))


@pytest.mark.parametrize("overlap", [-1, 7 * 86400 + 1, "soon"])
def test_rotate_secret_with_an_overlap_out_of_range_is_422(manager, overlap):
    endpoint = _endpoint(manager.api_key)
    response = manager.post(reverse("webhook-endpoint-rotate-secret", args=[endpoint.pk]),
                            {"overlap_seconds": overlap}, format="json")
    assert "overlap_seconds" in assert_error(response, 422, "validation_failed")["details"]
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == endpoint.secret


@pytest.mark.parametrize("body", ["[]", "false", "0", "null", '""'])
def test_rotate_secret_with_a_body_that_is_not_an_object_is_422_and_rotates_nothing(manager,
                                                                                     body):
    # given an endpoint
    endpoint = _endpoint(manager.api_key)

    # when a rotation is asked with a JSON body that is not an object (before: read as no body,
    # and the secret was rotated)
    response = manager.post(reverse("webhook-endpoint-rotate-secret", args=[endpoint.pk]),
                            body, content_type="application/json")

    # then it is refused, and the secret is the same
    assert_error(response, 422, "validation_failed")
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (stored.secret, stored.previous_secret) == (endpoint.secret, "")


# --- POST /api/v1/webhook-endpoints/{id}/recover ---------------------------------------------

def _recover(client, endpoint_id, **body):
    return client.post(reverse("webhook-endpoint-recover", args=[endpoint_id]), body,
                       format="json")


@pytest.fixture
def window(manager):
    """An endpoint's deliveries around a window [since, until): failed and parked ones inside
    (recoverable), one of each outside it, and inside it deliveries in every other status, a
    failed test ping (answered to whoever sent it, not sent again), and another endpoint's
    failed one."""
    now = timezone.now()
    since, until = now - timedelta(hours=3), now - timedelta(hours=1)
    endpoint = _endpoint(manager.api_key)
    inside = since + timedelta(minutes=30)
    recoverable = [
        _delivery(endpoint, DeliveryStatus.FAILED, created_at=since, attempts=8),  # at since
        _delivery(endpoint, DeliveryStatus.PARKED, created_at=inside),
        _delivery(endpoint, DeliveryStatus.FAILED, created_at=inside + timedelta(minutes=1)),
    ]
    others = [
        _delivery(endpoint, DeliveryStatus.FAILED, created_at=since - timedelta(seconds=1)),
        _delivery(endpoint, DeliveryStatus.PARKED, created_at=until),  # `until` is excluded
        *(_delivery(endpoint, status, created_at=inside) for status in (
            DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.DELIVERED,
            DeliveryStatus.RETRYING, DeliveryStatus.SKIPPED)),
        _delivery(endpoint, DeliveryStatus.FAILED, created_at=inside, type="webhook.test"),
        _delivery(_endpoint(manager.api_key), DeliveryStatus.FAILED, created_at=inside),
    ]
    return {"endpoint": endpoint, "since": since, "until": until,
            "recoverable": recoverable, "others": others}


def test_recover_dry_run_counts_failed_and_parked_in_the_window(manager, window):
    # when a dry run asks how many deliveries the window would recover
    response = _recover(manager, window["endpoint"].pk, since=window["since"].isoformat(),
                        until=window["until"].isoformat(), dry_run=True)

    # then it is 200 with the count of the failed and parked ones inside it
    assert response.status_code == 200, response.content
    assert response.json() == {"recovered": 3, "dry_run": True}
    # and nothing changed, no job was made
    statuses = {d.pk: d.status for d in window["recoverable"] + window["others"]}
    assert dict(Delivery.objects.values_list("pk", "status")) == statuses
    assert not Job.objects.exists()


def test_recover_without_until_counts_up_to_now(manager, window):
    response = _recover(manager, window["endpoint"].pk, since=window["since"].isoformat(),
                        dry_run=True)
    assert response.status_code == 200, response.content
    assert response.json() == {"recovered": 4, "dry_run": True}  # and the one at `until`


def test_recover_sends_again_with_the_same_message(manager, window,
                                                    django_capture_on_commit_callbacks):
    # when the window is recovered for real
    with django_capture_on_commit_callbacks(execute=False):
        response = _recover(manager, window["endpoint"].pk, since=window["since"].isoformat(),
                            until=window["until"].isoformat())

    # then it is 202 with the count, and each recovered delivery is pending with a new job,
    # its message (the webhook-id) and its attempts kept
    assert response.status_code == 202, response.content
    assert response.json() == {"recovered": 3, "dry_run": False}
    for delivery in window["recoverable"]:
        stored = Delivery.objects.get(pk=delivery.pk)
        assert stored.status == DeliveryStatus.PENDING
        assert stored.message_id == delivery.message_id
        assert stored.attempts == delivery.attempts
        job = Job.objects.get(pk=stored.job_id)
        assert job.params == {"delivery": str(delivery.pk)} and job.status == JobStatus.QUEUED
    # in their order (oldest first)
    jobs = Job.objects.filter(kind="webhook_delivery").order_by("created_at")
    assert [j.params["delivery"] for j in jobs] == [str(d.pk) for d in window["recoverable"]]
    # and the others are untouched
    for delivery in window["others"]:
        assert Delivery.objects.get(pk=delivery.pk).status == delivery.status


@pytest.mark.parametrize("until", [0, -1])
def test_recover_with_until_not_after_since_is_422(manager, window, until):
    since = window["since"]
    response = _recover(manager, window["endpoint"].pk, since=since.isoformat(),
                        until=(since + timedelta(seconds=until)).isoformat(), dry_run=True)
    assert "until" in assert_error(response, 422, "validation_failed")["details"]


def test_recover_with_since_in_the_future_and_no_until_is_422(manager, window):
    response = _recover(manager, window["endpoint"].pk,
                        since=(timezone.now() + timedelta(hours=1)).isoformat())
    assert "until" in assert_error(response, 422, "validation_failed")["details"]
    assert not Job.objects.exists()


@pytest.mark.parametrize("body", [{}, {"since": "yesterday"}, {"since": None},
                                  {"since": "2026-01-01T00:00:00Z", "dry_run": "perhaps"}])
def test_recover_with_an_invalid_body_is_422(manager, window, body):
    response = _recover(manager, window["endpoint"].pk, **body)
    assert_error(response, 422, "validation_failed")


def test_recover_on_a_disabled_endpoint_is_409(manager, window):
    # given the endpoint is disabled
    WebhookEndpoint.objects.filter(pk=window["endpoint"].pk).update(
        state=EndpointState.DISABLED, enabled=False, disabled_reason="disabled by its owner")

    # when its deliveries are recovered
    response = _recover(manager, window["endpoint"].pk, since=window["since"].isoformat())

    # then it is 409 endpoint_disabled (enable it first: that resumes the parked ones), and
    # nothing changed
    error = assert_error(response, 409, "endpoint_disabled")
    assert error["details"] == {"state": "disabled"}
    assert not Job.objects.exists()
    # but a dry run still counts
    dry = _recover(manager, window["endpoint"].pk, since=window["since"].isoformat(),
                   until=window["until"].isoformat(), dry_run=True)
    assert dry.status_code == 200 and dry.json() == {"recovered": 3, "dry_run": True}


# --- POST /api/v1/webhook-endpoints/{id}/test ------------------------------------------------

def test_the_test_ping_is_signed_delivered_and_answered(manager):
    with Receiver() as receiver:
        # given an endpoint at a real local receiver that trusts its secret
        created = _create(manager, url=receiver.url("/ping")).json()
        receiver.trust(created["secret"])

        # when its owner sends the test ping
        response = manager.post(reverse("webhook-endpoint-test", args=[created["id"]]))

    # then the receiver got one message, signed with the endpoint's secret
    [received] = receiver.at("/ping")
    assert received.verified_with == [created["secret"]]
    assert received.json["type"] == "webhook.test"
    assert received.json["data"]["endpoint_id"] == created["id"]
    # and the answer says it was delivered, with the delivery and the attempt
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"delivered", "delivery", "attempt"}
    assert body["delivered"] is True
    assert set(body["delivery"]) == DELIVERY_FIELDS
    assert body["delivery"]["status"] == "delivered"
    assert body["delivery"]["message_id"] == received.message_id
    assert body["delivery"]["event"] is None and body["delivery"]["event_type"] == "webhook.test"
    assert body["delivery"]["attempts"] == 1 and body["delivery"]["delivered_at"]
    assert set(body["attempt"]) == ATTEMPT_FIELDS
    assert body["attempt"]["outcome"] == "delivered" and body["attempt"]["http_status"] == 200
    assert body["attempt"]["smtp_code"] is None
    assert body["attempt"]["response_excerpt"] == "ok"
    assert body["attempt"]["latency_ms"] >= 0
    # and the delivery is stored like any other
    stored = manager.get(body["delivery"]["url"])
    assert stored.status_code == 200 and stored.json()["status"] == "delivered"


def test_a_failed_test_ping_says_why_and_leaves_the_endpoints_health(manager):
    with Receiver() as receiver:
        # given a receiver that answers 500
        receiver.script("/ping", [Answer(500, body=b"on fire")])
        created = _create(manager, url=receiver.url("/ping")).json()

        # when the test ping is sent
        response = manager.post(reverse("webhook-endpoint-test", args=[created["id"]]))

    # then it was sent once (not retried) and the answer says what the receiver said
    assert len(receiver.at("/ping")) == 1
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["delivered"] is False
    assert body["delivery"]["status"] == "failed"
    assert body["delivery"]["last_error"]["http_status"] == 500
    assert body["attempt"]["outcome"] == "gave_up"
    assert body["attempt"]["http_status"] == 500
    assert body["attempt"]["response_excerpt"] == "on fire"
    assert body["attempt"]["error_type"] == "TransientError"
    assert "500" in body["attempt"]["error_message"]
    # and the endpoint's health did not move
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert endpoint.consecutive_failures == 0 and endpoint.state == EndpointState.ACTIVE


# --- GET /api/v1/deliveries ------------------------------------------------------------------

def _delivery_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [d["id"] for d in response.json()["results"]]


def test_deliveries_list_newest_first_with_filters(manager):
    # given deliveries of two endpoints, two events, in several statuses
    now = timezone.now()
    first, second = _endpoint(manager.api_key), _endpoint(manager.api_key)
    event_a, event_b = uuid.uuid4(), uuid.uuid4()
    a1 = _delivery(first, DeliveryStatus.DELIVERED, created_at=now - timedelta(minutes=3),
                   event_id=event_a)
    b1 = _delivery(first, DeliveryStatus.FAILED, created_at=now - timedelta(minutes=2),
                   event_id=event_b)
    message_a = Message.objects.get(event_id=event_a)
    a2 = Delivery.objects.create(message=message_a, endpoint=second, created_at=now,
                                 status=DeliveryStatus.FAILED, api_key_id=manager.api_key.pk)
    url = reverse(DELIVERIES)

    # then the list has them all, newest first, and each filter narrows it
    assert _delivery_ids(manager.get(url)) == [str(a2.pk), str(b1.pk), str(a1.pk)]
    assert _delivery_ids(manager.get(url, {"status": "failed"})) == [str(a2.pk), str(b1.pk)]
    assert _delivery_ids(manager.get(url, {"endpoint": str(first.pk)})) == [str(b1.pk),
                                                                            str(a1.pk)]
    assert _delivery_ids(manager.get(url, {"event": str(event_a)})) == [str(a2.pk), str(a1.pk)]
    assert _delivery_ids(manager.get(url, {"status": "failed", "endpoint": str(first.pk),
                                           "event": str(event_b)})) == [str(b1.pk)]
    assert _delivery_ids(manager.get(url, {"status": "parked"})) == []
    # and an endpoint's `deliveries` link lists its own
    link = manager.get(_detail(second.pk)).json()["deliveries"]
    assert _delivery_ids(manager.get(link)) == [str(a2.pk)]


def test_deliveries_list_only_the_keys_own(manager, make_client):
    mine = _delivery(_endpoint(manager.api_key))
    other = make_client([Scopes.NOTIFICATIONS_READ], name="other")
    theirs = _delivery(_endpoint(other.api_key))
    assert _delivery_ids(manager.get(reverse(DELIVERIES))) == [str(mine.pk)]
    assert _delivery_ids(other.get(reverse(DELIVERIES))) == [str(theirs.pk)]
    # another key's endpoint as a filter finds nothing
    assert _delivery_ids(manager.get(reverse(DELIVERIES),
                                     {"endpoint": str(theirs.endpoint_id)})) == []


def test_deliveries_cursor_pagination(manager):
    now = timezone.now()
    endpoint = _endpoint(manager.api_key)
    deliveries = [_delivery(endpoint, created_at=now - timedelta(seconds=i)) for i in range(5)]
    seen, response = [], manager.get(reverse(DELIVERIES), {"limit": 2})
    for _ in range(5):
        seen += _delivery_ids(response)
        if not response.json()["next"]:
            break
        response = manager.get(response.json()["next"])
    assert seen == [str(d.pk) for d in deliveries]


@pytest.mark.parametrize("name", ["status", "endpoint", "event", "limit"])
def test_deliveries_with_an_empty_filter_is_422(manager, name):
    _delivery(_endpoint(manager.api_key))
    response = manager.get(f"{reverse(DELIVERIES)}?{name}=")
    assert list(assert_error(response, 422, "validation_failed")["details"]) == [name]


@pytest.mark.parametrize(("name", "value"), [("status", "lost"), ("endpoint", "not-a-uuid"),
                                             ("event", "42"), ("limit", "0")])
def test_deliveries_with_an_invalid_filter_is_422(manager, name, value):
    response = manager.get(reverse(DELIVERIES), {name: value})
    assert name in assert_error(response, 422, "validation_failed")["details"]


@pytest.mark.parametrize("cursor", ["!!!!", "bm90LWEtY3Vyc29y", "cD0yMDI2LTEzLTQ1"])
def test_deliveries_with_a_bad_cursor_is_422_invalid_cursor(manager, cursor):
    _delivery(_endpoint(manager.api_key))
    response = manager.get(reverse(DELIVERIES), {"cursor": cursor})
    assert assert_error(response, 422, "invalid_cursor")["details"] == {"cursor": cursor}


# --- GET /api/v1/deliveries/{id}[/attempts] --------------------------------------------------

def test_read_a_delivery(manager):
    # given a delivery of an event, failed after two attempts
    endpoint = _endpoint(manager.api_key)
    event_id = uuid.uuid4()
    last = timezone.now() - timedelta(minutes=1)
    error = {"type": "PermanentError", "message": "the receiver answered 400",
             "http_status": 400}
    delivery = _delivery(endpoint, DeliveryStatus.FAILED, event_id=event_id,
                         type="product.updated", attempts=2, last_attempt_at=last,
                         last_error=error)

    # when it is read
    response = manager.get(reverse("delivery-detail", args=[delivery.pk]))

    # then every field says what is stored
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == DELIVERY_FIELDS
    assert body["id"] == str(delivery.pk)
    assert body["message_id"] == delivery.message_id and body["message_id"].startswith("msg_")
    assert body["event"] == str(event_id) and body["event_type"] == "product.updated"
    assert body["endpoint"] == str(endpoint.pk)
    # (a webhook's: the fields of email and in-app deliveries are null)
    assert body["channel"] == "webhook" and body["reason"] == ""
    assert (body["notification"], body["recipient_id"], body["address"], body["digest"]) == (
        None, None, None, None)
    assert (body["status"], body["attempts"]) == ("failed", 2)
    assert body["next_attempt_at"] is None and body["delivered_at"] is None
    assert _close_to(body["last_attempt_at"], last, 0.001)
    assert body["last_error"] == error
    assert body["url"].endswith(reverse("delivery-detail", args=[delivery.pk]))
    assert body["attempts_url"].endswith(reverse("delivery-attempts", args=[delivery.pk]))


def test_a_retrying_delivery_says_when_its_next_attempt_is_from_its_job(manager):
    # given a delivery waiting for a retry: its job knows when
    endpoint = _endpoint(manager.api_key)
    delivery = _delivery(endpoint, DeliveryStatus.RETRYING, attempts=1)
    retry_at = timezone.now() + timedelta(minutes=5)
    job = JobFactory(kind="webhook_delivery", params={"delivery": str(delivery.pk)},
                     status=JobStatus.RETRYING, attempts=1, next_retry_at=retry_at)
    Delivery.objects.filter(pk=delivery.pk).update(job_id=job.pk)

    # when it is read, and listed
    read = manager.get(reverse("delivery-detail", args=[delivery.pk]))
    listed = manager.get(reverse(DELIVERIES), {"status": "retrying"})

    # then both say the job's next retry
    assert read.status_code == 200, read.content
    assert _close_to(read.json()["next_attempt_at"], retry_at, 0.001)
    assert listed.json()["results"][0]["next_attempt_at"] == read.json()["next_attempt_at"]


def test_a_delivery_waiting_for_its_rate_limit_says_when(manager):
    # given a pending delivery held back by its endpoint's rate limit (its own next_attempt_at)
    endpoint = _endpoint(manager.api_key, rate_limit=1)
    at = timezone.now() + timedelta(seconds=2)
    delivery = _delivery(endpoint, DeliveryStatus.PENDING, next_attempt_at=at)
    body = manager.get(reverse("delivery-detail", args=[delivery.pk])).json()
    assert _close_to(body["next_attempt_at"], at, 0.001)


def test_a_delivered_delivery_has_no_next_attempt_even_if_its_job_had_one(manager):
    endpoint = _endpoint(manager.api_key)
    delivery = _delivery(endpoint, DeliveryStatus.DELIVERED, attempts=2,
                         delivered_at=timezone.now())
    job = JobFactory(kind="webhook_delivery", params={"delivery": str(delivery.pk)},
                     status=JobStatus.SUCCEEDED, next_retry_at=timezone.now())
    Delivery.objects.filter(pk=delivery.pk).update(job_id=job.pk)
    body = manager.get(reverse("delivery-detail", args=[delivery.pk])).json()
    assert body["next_attempt_at"] is None and body["delivered_at"]


def test_attempts_are_listed_in_number_order_with_their_facts(manager):
    # given a delivery with three attempts stored out of order
    delivery = _delivery(_endpoint(manager.api_key), DeliveryStatus.DELIVERED, attempts=3)
    start = timezone.now() - timedelta(hours=1)
    for number, outcome, status in ((3, AttemptResult.DELIVERED, 200),
                                    (1, AttemptResult.FAILED, None),
                                    (2, AttemptResult.FAILED, 503)):
        DeliveryAttempt.objects.create(
            delivery=delivery, number=number, at=start + timedelta(minutes=number),
            outcome=outcome, http_status=status, latency_ms=10 * number,
            response_excerpt="ok" if status == 200 else "",
            error_type="" if status == 200 else ("TimeoutError" if status is None else
                                                 "TransientError"),
            error_message="" if status == 200 else f"attempt {number}", worker="w1")

    # when they are read
    response = manager.get(reverse("delivery-attempts", args=[delivery.pk]))

    # then they come in number order, each with the documented fields (not the worker)
    assert response.status_code == 200, response.content
    body = response.json()
    assert [a["number"] for a in body] == [1, 2, 3]
    assert all(set(a) == ATTEMPT_FIELDS for a in body)
    assert [a["outcome"] for a in body] == ["failed", "failed", "delivered"]
    assert [a["http_status"] for a in body] == [None, 503, 200]
    assert [a["latency_ms"] for a in body] == [10, 20, 30]
    assert body[0]["error_type"] == "TimeoutError" and body[0]["error_message"] == "attempt 1"
    assert body[2]["response_excerpt"] == "ok" and body[2]["error_type"] == ""
    assert _close_to(body[0]["at"], start + timedelta(minutes=1), 0.001)


def test_attempts_of_a_delivery_never_tried_is_empty(manager):
    delivery = _delivery(_endpoint(manager.api_key), DeliveryStatus.PENDING)
    response = manager.get(reverse("delivery-attempts", args=[delivery.pk]))
    assert response.status_code == 200 and response.json() == []


def test_unknown_or_another_keys_delivery_is_404(manager, make_client):
    other = make_client([Scopes.NOTIFICATIONS_READ], name="other")
    theirs = _delivery(_endpoint(other.api_key))
    for delivery_id in (uuid.uuid4(), theirs.pk):
        assert_error(manager.get(reverse("delivery-detail", args=[delivery_id])), 404,
                     "not_found")
        assert_error(manager.get(reverse("delivery-attempts", args=[delivery_id])), 404,
                     "not_found")


# --- What clients cannot do through the other APIs -------------------------------------------

@pytest.mark.parametrize("event_type", ["webhook_endpoint.degraded",
                                        "webhook_endpoint.disabled"])
def test_the_endpoint_health_events_are_published_by_the_server_only(client_all, event_type):
    # when a client publishes one of the operational events itself
    response = client_all.post(reverse("event-publish"), {
        "type": event_type, "payload": {"endpoint_id": str(uuid.uuid4()), "url": LOCAL_URL,
                                        "state": "degraded", "reason": "forged"}},
        format="json")

    # then that type is unknown to it, and nothing is stored
    error = assert_error(response, 422, "unknown_event_type")
    assert event_type not in error["details"]["known"]
    assert not Job.objects.exists()


@pytest.mark.parametrize(("kind", "params"), [
    ("webhook_delivery", {"delivery": str(uuid.uuid4())}),
    ("webhook_fanout", {}),
])
def test_the_webhook_job_kinds_cannot_be_triggered(client_all, kind, params):
    response = client_all.post(reverse("job-list"), {"kind": kind, "params": params},
                               format="json")
    error = assert_error(response, 422, "unknown_job_kind")
    assert kind not in error["details"]["known"]
    assert not Job.objects.exists()

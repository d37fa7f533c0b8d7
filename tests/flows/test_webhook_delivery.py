"""Webhook delivery on a real worker and a real local receiver: retries and their spacing,
permanent failures, 410 and 429, timeouts, secret rotation, the endpoint health lifecycle,
recovery, the circuit breaker, the SSRF guard at registration and at delivery, effects once,
the fan-out, and the test ping.

No mocks: the API is called over the test client, the worker is the session's in-process
Celery worker on the real broker (tests/conftest.py), and the receiver is an HTTP server
(tests/webhook_receiver.py) that verifies every signature with the `standardwebhooks`
library. The one seam is `domain.notifications.ssrf.lookup`, the DNS lookup, which a test
replaces to play a DNS server whose answer changes between two lookups.

The test settings space attempts 1 s, 2 s, 2 s apart (±10%, in whole seconds):
config/settings/test.py, WEBHOOK_RETRY_SCHEDULE.
"""

from __future__ import annotations

import http.client
import itertools
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from domain.events.models import Event
from domain.jobs.models import Job, JobStatus
from domain.notifications import ssrf
from domain.notifications.models import Delivery, DeliveryStatus, WebhookEndpoint
from tests.conftest import assert_error, wait_for
from tests.webhook_receiver import Answer, Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

SCHEDULE = tuple(django_settings.WEBHOOK_RETRY_SCHEDULE)  # (1, 2, 2)
ATTEMPTS = len(SCHEDULE) + 1


# --- Helpers ---------------------------------------------------------------------------------

def _register(client, receiver: Receiver, path: str = "/hook", *, url: str | None = None,
              event_types=("demo.ping",), **fields) -> dict:
    """Register an endpoint through the API; the receiver trusts its secret."""
    body = {"url": url or receiver.url(path),
            "event_types": list(event_types) if event_types is not None else None, **fields}
    created = client.post(reverse("webhook-endpoint-list"), body, format="json")
    assert created.status_code == 201, created.content
    endpoint = created.json()
    receiver.trust(endpoint["secret"])
    return endpoint


def _publish(client, message: str = "hi", event_type: str = "demo.ping",
             payload: dict | None = None) -> str:
    published = client.post(reverse("event-publish"), {
        "type": event_type, "payload": payload or {"message": message}}, format="json")
    assert published.status_code == 202, published.content
    return published.json()["id"]


def _delivery(event_id: str, endpoint_id: str | None = None) -> Delivery | None:
    found = Delivery.objects.filter(message__event_id=event_id)
    if endpoint_id:
        found = found.filter(endpoint_id=endpoint_id)
    return found.first()


def _settled(event_id: str, *statuses: str, endpoint_id: str | None = None,
             timeout: float = 30) -> Delivery:
    """Wait until the event's delivery (to that endpoint) has one of these statuses."""
    def check():
        delivery = _delivery(event_id, endpoint_id)
        return delivery if delivery is not None and delivery.status in statuses else None

    return wait_for(check, timeout=timeout,
                    message=f"the delivery of event {event_id} to be {'/'.join(statuses)}")


def _job(delivery: Delivery, *statuses: str) -> Job:
    """Wait until the delivery's job has one of these statuses (the job's bookkeeping comes
    after the delivery's own)."""
    return wait_for(lambda: Job.objects.filter(pk=delivery.job_id, status__in=statuses).first(),
                    message=f"job {delivery.job_id} to be {'/'.join(statuses)}")


def _attempts(client, delivery: Delivery) -> list[dict]:
    answer = client.get(reverse("delivery-attempts", args=[delivery.pk]))
    assert answer.status_code == 200, answer.content
    return answer.json()


def _endpoint(client, endpoint_id: str) -> dict:
    answer = client.get(reverse("webhook-endpoint-detail", args=[endpoint_id]))
    assert answer.status_code == 200, answer.content
    return answer.json()


def _gaps(received) -> list[float]:
    return [round(b.at - a.at, 3) for a, b in itertools.pairwise(received)]


# --- Retries, permanent failures, 410, 429, timeouts ----------------------------------------

def test_500_500_200_is_delivered_on_the_third_attempt_spaced_by_the_schedule(
        celery_worker_thread, client_all):
    with Receiver() as receiver:
        # given an endpoint whose receiver answers 500, 500, then 200
        endpoint = _register(client_all, receiver)
        receiver.script("/hook", [500, 500, 200])

        # when an event it subscribes to is published
        event_id = _publish(client_all)

        # then it is delivered on attempt 3
        delivery = _settled(event_id, DeliveryStatus.DELIVERED)
        assert delivery.attempts == 3
        attempts = _attempts(client_all, delivery)
        assert [(a["number"], a["outcome"], a["http_status"]) for a in attempts] == [
            (1, "failed", 500), (2, "failed", 500), (3, "delivered", 200)]
        assert all(a["latency_ms"] is not None for a in attempts)
        assert attempts[0]["error_type"] == "TransientError"
        assert attempts[0]["response_excerpt"] == "ok"
        # and the receiver's three requests are spaced by the schedule (1 s, then 2 s)
        received = receiver.at("/hook")
        assert len(received) == 3
        gaps = _gaps(received)
        print(f"gaps between attempts: {gaps} (schedule {SCHEDULE[:2]})")
        assert gaps[0] >= 0.9 * SCHEDULE[0] and gaps[1] >= 0.9 * SCHEDULE[1], gaps
        assert gaps[0] < SCHEDULE[0] + 5 and gaps[1] < SCHEDULE[1] + 5, gaps
        # and every request is the same message, signed, verifying
        assert {r.message_id for r in received} == {delivery.message_id}
        assert all(r.verified_with == [endpoint["secret"]] for r in received)
        assert _job(delivery, JobStatus.SUCCEEDED).attempts == 3


def test_a_receiver_failing_every_attempt_fails_the_delivery_after_all_attempts(
        celery_worker_thread, client_all):
    with Receiver() as receiver:
        # given a receiver that always answers 500
        _register(client_all, receiver)
        receiver.script("/hook", [500])

        # when an event is published
        event_id = _publish(client_all)

        # then the delivery fails after every attempt of the schedule, the last one giving up
        delivery = _settled(event_id, DeliveryStatus.FAILED)
        attempts = _attempts(client_all, delivery)
        assert delivery.attempts == ATTEMPTS == 4
        assert [a["outcome"] for a in attempts] == ["failed"] * (ATTEMPTS - 1) + ["gave_up"]
        assert all(a["http_status"] == 500 for a in attempts)
        assert delivery.last_error["http_status"] == 500
        # and its job is dead, having used its attempts; no request after the last
        job = _job(delivery, JobStatus.DEAD)
        assert job.attempts == ATTEMPTS
        assert len(receiver.at("/hook")) == ATTEMPTS
        print(f"gaps between attempts: {_gaps(receiver.at('/hook'))} (schedule {SCHEDULE})")


def test_a_400_fails_the_delivery_at_once(celery_worker_thread, client_all):
    with Receiver() as receiver:
        # given a receiver that answers 400
        _register(client_all, receiver)
        receiver.script("/hook", [Answer(400, body=b"bad payload")])

        # when an event is published
        event_id = _publish(client_all)

        # then the delivery fails after one attempt, which gave up; its job is dead
        delivery = _settled(event_id, DeliveryStatus.FAILED)
        assert delivery.attempts == 1
        [attempt] = _attempts(client_all, delivery)
        assert (attempt["outcome"], attempt["http_status"]) == ("gave_up", 400)
        assert attempt["error_type"] == "PermanentError"
        assert attempt["response_excerpt"] == "bad payload"
        assert _job(delivery, JobStatus.DEAD).attempts == 1
        assert len(receiver.at("/hook")) == 1


@pytest.mark.parametrize("status", [301, 302])
def test_a_redirect_is_not_followed_and_fails_the_delivery(celery_worker_thread, client_all,
                                                          status):
    with Receiver() as receiver:
        # given a receiver that redirects to another path of its own
        _register(client_all, receiver)
        receiver.script("/hook", [Answer(status, headers={"Location": receiver.url("/target")})])

        # when an event is published
        event_id = _publish(client_all)

        # then the delivery fails after one attempt, and the redirect's target got nothing
        delivery = _settled(event_id, DeliveryStatus.FAILED)
        [attempt] = _attempts(client_all, delivery)
        assert (attempt["outcome"], attempt["http_status"]) == ("gave_up", status)
        assert "redirects are not followed" in attempt["error_message"]
        _job(delivery, JobStatus.DEAD)
        assert len(receiver.at("/hook")) == 1
        assert receiver.at("/target") == []


def test_a_410_disables_the_endpoint_without_a_retry(celery_worker_thread, client_all):
    with Receiver() as receiver:
        # given a receiver that answers 410 Gone, and another endpoint of the same owner
        # subscribed to the operational event that warns of a disabling
        endpoint = _register(client_all, receiver)
        receiver.script("/hook", [410])
        ops = _register(client_all, receiver, "/ops", event_types=["webhook_endpoint.disabled"])

        # when an event is published
        event_id = _publish(client_all)

        # then the delivery fails after one attempt, its job dead: no retry
        delivery = _settled(event_id, DeliveryStatus.FAILED)
        [attempt] = _attempts(client_all, delivery)
        assert (attempt["outcome"], attempt["http_status"]) == ("gave_up", 410)
        assert attempt["error_type"] == "EndpointGone"
        assert _job(delivery, JobStatus.DEAD).attempts == 1
        # and the endpoint is disabled, as the API shows, with the reason
        shown = wait_for(lambda: (e := _endpoint(client_all, endpoint["id"]))["state"]
                         == "disabled" and e, message="the endpoint disabled")
        assert shown["enabled"] is False
        assert "410" in shown["disabled_reason"]
        # and webhook_endpoint.disabled was published for its owner
        disabled = wait_for(lambda: Event.objects.filter(
            type="webhook_endpoint.disabled", payload__endpoint_id=endpoint["id"]).first(),
            message="the webhook_endpoint.disabled event")
        assert disabled.api_key_id == client_all.api_key.pk
        assert disabled.payload["state"] == "disabled"
        # and it reached the owner's endpoint subscribed to it, signed with that one's secret
        _settled(disabled.pk, DeliveryStatus.DELIVERED, endpoint_id=ops["id"])
        [notice] = receiver.at("/ops")
        assert notice.json["type"] == "webhook_endpoint.disabled"
        assert notice.json["data"]["endpoint_id"] == endpoint["id"]
        assert notice.verified_with == [ops["secret"]]
        assert len(receiver.at("/hook")) == 1


def test_a_410_parks_the_other_deliveries_sent_with_it_instead_of_giving_them_up(
        celery_worker_thread, client_all, settings):
    # given one request at a time per endpoint, so a batch's deliveries reach the receiver in
    # the batch's order
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 1
    with Receiver() as receiver:
        # and two failed deliveries of an endpoint (its receiver answered 400)
        endpoint = _register(client_all, receiver)
        receiver.script("/hook", [400])
        start = timezone.now()
        first, second = (_settled(_publish(client_all, m), DeliveryStatus.FAILED)
                         for m in ("a", "b"))

        # when both are recovered together (one batch, oldest first) and the receiver answers
        # the first with 410 Gone and the second with 500
        receiver.script("/hook", [410, 500])
        answer = client_all.post(reverse("webhook-endpoint-recover", args=[endpoint["id"]]),
                                 {"since": start.isoformat()}, format="json")
        assert answer.status_code == 202, answer.content

        # then the endpoint is disabled, the 410's delivery failed for good
        wait_for(lambda: WebhookEndpoint.objects.get(pk=endpoint["id"]).state == "disabled",
                 message="the endpoint disabled")
        first = _settled(first.message.event_id, DeliveryStatus.FAILED)
        assert [a["outcome"] for a in _attempts(client_all, first)] == ["gave_up", "gave_up"]
        # and the other is parked, waiting for the endpoint to be enabled: its 500 was not
        # the last word (the attempt says it will be tried again, as it will on re-enabling)
        second = _settled(second.message.event_id, DeliveryStatus.PARKED)
        attempts = _attempts(client_all, second)
        assert [(a["outcome"], a["http_status"]) for a in attempts] == [
            ("gave_up", 400), ("failed", 500)]

        # when the endpoint is enabled again, the receiver answering 200
        receiver.script("/hook", [200])
        enabled = client_all.patch(reverse("webhook-endpoint-detail", args=[endpoint["id"]]),
                                   {"enabled": True}, format="json")
        assert enabled.status_code == 200, enabled.content

        # then the parked one is delivered; the one the receiver said is gone is not re-sent
        second = _settled(second.message.event_id, DeliveryStatus.DELIVERED)
        assert Delivery.objects.get(pk=first.pk).status == DeliveryStatus.FAILED
        assert [r.message_id for r in receiver.at("/hook")] == [
            first.message_id, second.message_id, first.message_id, second.message_id,
            second.message_id]


def test_a_429_with_retry_after_is_retried_no_sooner_than_asked(celery_worker_thread,
                                                                 client_all):
    with Receiver() as receiver:
        # given a receiver that answers 429 with Retry-After: 2 (the schedule alone would wait
        # 1 s), then 200
        _register(client_all, receiver)
        receiver.script("/hook", [Answer(429, headers={"Retry-After": "2"}), 200])

        # when an event is published
        event_id = _publish(client_all)

        # then it is delivered on attempt 2, which came at least ~2 s after the first
        delivery = _settled(event_id, DeliveryStatus.DELIVERED)
        attempts = _attempts(client_all, delivery)
        assert [(a["outcome"], a["http_status"]) for a in attempts] == [
            ("failed", 429), ("delivered", 200)]
        [gap] = _gaps(receiver.at("/hook"))
        print(f"gap after 429 Retry-After: 2 -> {gap} s")
        assert 0.9 * 2 <= gap < 2 + 5


def test_a_receiver_hanging_past_the_read_timeout_fails_that_attempt_only(
        celery_worker_thread, client_all, settings):
    # given a read timeout of 1 s
    settings.WEBHOOK_READ_TIMEOUT = 1
    with Receiver() as receiver:
        # and a receiver that answers its first request after 3 s, then at once
        _register(client_all, receiver)
        receiver.script("/hook", [Answer(200, delay=3), 200])

        # when an event is published
        event_id = _publish(client_all)

        # then the first attempt failed with a timeout, without waiting for the receiver, and
        # the second was delivered
        delivery = _settled(event_id, DeliveryStatus.DELIVERED)
        first, second = _attempts(client_all, delivery)
        print(f"timed-out attempt: {first['error_type']}: {first['error_message']} "
              f"after {first['latency_ms']} ms")
        assert first["outcome"] == "failed" and first["http_status"] is None
        assert "Timeout" in first["error_type"]
        assert 900 <= first["latency_ms"] < 3000
        assert (second["outcome"], second["http_status"]) == ("delivered", 200)
        assert len(receiver.at("/hook")) == 2


# --- The rate limit --------------------------------------------------------------------------

def test_the_rate_limit_spaces_a_burst_and_waiting_uses_no_attempt(celery_worker_thread,
                                                                  client_all):
    with Receiver() as receiver:
        # given an endpoint limited to 1 message a second
        endpoint = _register(client_all, receiver, rate_limit=1)

        # when 4 events are published at once (one batch: fanned out, and sent, together)
        published = client_all.post(reverse("event-batch-publish"), {"events": [
            {"type": "demo.ping", "payload": {"message": str(n)}} for n in range(4)]},
            format="json")
        assert published.status_code == 202, published.content
        event_ids = [e["id"] for e in published.json()["events"]]

        # then all are delivered, no two within a second of each other
        delivered = [_settled(e, DeliveryStatus.DELIVERED) for e in event_ids]
        received = receiver.at("/hook")
        gaps = _gaps(received)
        print(f"gaps at 1 message/s: {gaps}")
        assert len(received) == 4
        assert all(gap >= 0.9 for gap in gaps), gaps
        # and the waiting was not an attempt: one each, for the deliveries and their jobs
        assert [d.attempts for d in delivered] == [1, 1, 1, 1]
        assert [_job(d, JobStatus.SUCCEEDED).attempts for d in delivered] == [1, 1, 1, 1]
        assert all(len(_attempts(client_all, d)) == 1 for d in delivered)
        assert endpoint["rate_limit"] == 1


# --- Secret rotation -------------------------------------------------------------------------

def test_during_a_rotation_overlap_both_secrets_sign_and_after_it_only_the_new(
        celery_worker_thread, client_all):
    with Receiver() as receiver:
        # given an endpoint with its first secret
        endpoint = _register(client_all, receiver)
        first = endpoint["secret"]
        rotate = reverse("webhook-endpoint-rotate-secret", args=[endpoint["id"]])

        # when its secret is rotated with the default overlap (24 h), and an event published
        rotated = client_all.post(rotate, {}, format="json")
        assert rotated.status_code == 200, rotated.content
        second = rotated.json()["secret"]
        assert second.startswith("whsec_") and second != first
        assert rotated.json()["previous_secret_expires_at"] is not None
        assert "secret" not in _endpoint(client_all, endpoint["id"])  # shown once, no more
        receiver.trust(second)
        _settled(_publish(client_all, "during"), DeliveryStatus.DELIVERED)

        # then the delivery carries two signatures, and a receiver holding either secret
        # alone verifies it
        [during] = receiver.at("/hook")
        assert len(during.signatures) == 2
        assert sorted(during.verified_with) == sorted([first, second])

        # when it is rotated again with no overlap, and another event published
        again = client_all.post(rotate, {"overlap_seconds": 0}, format="json")
        assert again.status_code == 200, again.content
        third = again.json()["secret"]
        receiver.trust(third)
        _settled(_publish(client_all, "after"), DeliveryStatus.DELIVERED)

        # then only the new secret signs: the one it replaced no longer verifies alone
        after = receiver.at("/hook")[1]
        assert len(after.signatures) == 1
        assert after.verified_with == [third]
        with pytest.raises(WebhookVerificationError):
            Webhook(second).verify(after.body, after.headers)


def test_after_the_overlap_expires_the_old_secret_stops_signing(celery_worker_thread,
                                                                 client_all):
    with Receiver() as receiver:
        # given an endpoint rotated with an overlap of 1 s
        endpoint = _register(client_all, receiver)
        old = endpoint["secret"]
        rotated = client_all.post(reverse("webhook-endpoint-rotate-secret",
                                          args=[endpoint["id"]]), {"overlap_seconds": 1},
                                  format="json")
        assert rotated.status_code == 200, rotated.content
        new = rotated.json()["secret"]
        receiver.trust(new)

        # when the overlap has passed and an event is published
        expires = WebhookEndpoint.objects.get(pk=endpoint["id"]).previous_secret_expires_at
        wait_for(lambda: timezone.now() > expires, message="the overlap to pass")
        _settled(_publish(client_all), DeliveryStatus.DELIVERED)

        # then it is signed by the new secret only
        [got] = receiver.at("/hook")
        assert len(got.signatures) == 1
        assert got.verified_with == [new]
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(got.body, got.headers)


# --- The health lifecycle: degraded, disabled, enabled again ---------------------------------

def test_a_failing_endpoint_is_degraded_then_disabled_and_resumes_in_order_when_enabled(
        celery_worker_thread, client_all, settings):
    # given thresholds that act at once: degraded after 2 failures, disabled after 4, with the
    # circuit breaker out of the way, and one request at a time per endpoint (a strict order)
    settings.WEBHOOK_DEGRADE_AFTER_SECONDS = 0
    settings.WEBHOOK_DEGRADE_MIN_FAILURES = 2
    settings.WEBHOOK_DISABLE_AFTER_SECONDS = 0
    settings.WEBHOOK_DISABLE_MIN_FAILURES = 4
    settings.WEBHOOK_CIRCUIT_FAILURES = 1000
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 1
    with Receiver() as receiver:
        # and an endpoint whose receiver answers 500
        endpoint = _register(client_all, receiver)
        receiver.script("/hook", [500])

        # when two events are published
        first = [_publish(client_all, "a"), _publish(client_all, "b")]

        # then after 2 failures the endpoint is degraded, and its owner told
        degraded = wait_for(lambda: Event.objects.filter(
            type="webhook_endpoint.degraded", payload__endpoint_id=endpoint["id"]).first(),
            message="the webhook_endpoint.degraded event")
        assert degraded.payload["state"] == "degraded"
        assert degraded.payload["consecutive_failures"] >= 2
        # and after 4 it is disabled, told too
        disabled = wait_for(lambda: Event.objects.filter(
            type="webhook_endpoint.disabled", payload__endpoint_id=endpoint["id"]).first(),
            message="the webhook_endpoint.disabled event")
        assert disabled.payload["consecutive_failures"] == 4
        shown = _endpoint(client_all, endpoint["id"])
        assert (shown["state"], shown["enabled"]) == ("disabled", False)
        # and its open deliveries are parked, with the attempts they had used
        parked = [_settled(e, DeliveryStatus.PARKED) for e in first]
        assert [d.attempts for d in parked] == [2, 2]
        # and no attempt follows: their jobs end without sending (cancelled, or finding the
        # delivery parked), and the receiver saw the 4 failures only
        wait_for(lambda: not Job.objects.filter(
            pk__in=[d.job_id for d in parked],
            status__in=[JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING]).exists(),
            message="the parked deliveries' jobs to end")
        assert len(receiver.at("/hook")) == 4
        assert [d.attempts for d in Delivery.objects.filter(pk__in=[d.pk for d in parked])] \
            == [2, 2]

        # when more events are published while it is disabled
        later = [_publish(client_all, "c"), _publish(client_all, "d")]

        # then their deliveries are parked at once, with no attempt
        for event_id in later:
            assert _settled(event_id, DeliveryStatus.PARKED).attempts == 0

        # when its owner enables it again, the receiver answering 200 now
        receiver.script("/hook", [200])
        enabled = client_all.patch(reverse("webhook-endpoint-detail", args=[endpoint["id"]]),
                                   {"enabled": True}, format="json")
        assert enabled.status_code == 200, enabled.content
        assert (enabled.json()["state"], enabled.json()["enabled"]) == ("active", True)

        # then every parked delivery is delivered, in the order they were made
        delivered = [_settled(e, DeliveryStatus.DELIVERED) for e in first + later]
        in_order = list(Delivery.objects.filter(endpoint_id=endpoint["id"])
                        .order_by("created_at", "id").values_list("message_id", flat=True))
        resumed = [r.message_id for r in receiver.at("/hook")[4:]]
        assert resumed == in_order
        assert len(resumed) == 4
        # having used no attempt while parked: failed, failed, delivered for the first two
        assert [d.attempts for d in delivered] == [3, 3, 1, 1]
        assert [a["outcome"] for a in _attempts(client_all, delivered[0])] == [
            "failed", "failed", "delivered"]
        shown = _endpoint(client_all, endpoint["id"])
        assert shown["consecutive_failures"] == 0 and shown["failing_since"] is None


def test_a_degraded_endpoint_that_delivers_again_is_active(celery_worker_thread, client_all,
                                                           settings):
    # given an endpoint degraded after 2 failures (its receiver answered 500, 500)
    settings.WEBHOOK_DEGRADE_AFTER_SECONDS = 0
    settings.WEBHOOK_DEGRADE_MIN_FAILURES = 2
    settings.WEBHOOK_CIRCUIT_FAILURES = 1000
    with Receiver() as receiver:
        endpoint = _register(client_all, receiver)
        receiver.script("/hook", [500, 500, 200])
        event_id = _publish(client_all)
        wait_for(lambda: WebhookEndpoint.objects.get(pk=endpoint["id"]).state == "degraded",
                 message="the endpoint degraded")

        # when the next attempt is delivered (the receiver answers 200 now)
        _settled(event_id, DeliveryStatus.DELIVERED)

        # then the endpoint is active again, its failure streak over
        shown = wait_for(lambda: (e := _endpoint(client_all, endpoint["id"]))["state"]
                         == "active" and e, message="the endpoint active again")
        assert shown["consecutive_failures"] == 0 and shown["failing_since"] is None
        assert shown["last_success_at"] is not None


def test_deleting_an_endpoint_ends_its_deliveries_without_another_send(celery_worker_thread,
                                                                      client_all):
    with Receiver() as receiver:
        # given a delivery waiting for its retry (the receiver answered 500)
        endpoint = _register(client_all, receiver)
        receiver.script("/hook", [500])
        delivery = _settled(_publish(client_all), DeliveryStatus.RETRYING)
        job_id = delivery.job_id

        # when the endpoint is deleted
        deleted = client_all.delete(reverse("webhook-endpoint-detail", args=[endpoint["id"]]))
        assert deleted.status_code == 204

        # then the delivery is gone with it, and its job, when its retry comes, ends without
        # sending
        assert not Delivery.objects.filter(pk=delivery.pk).exists()
        job = wait_for(lambda: Job.objects.filter(pk=job_id, status=JobStatus.SUCCEEDED).first(),
                       message="the job to end")
        assert "no longer exists" in job.result["skipped"]
        assert len(receiver.at("/hook")) == 1


# --- Recover ---------------------------------------------------------------------------------

def test_recover_resends_failed_deliveries_in_its_window_with_the_same_webhook_id(
        celery_worker_thread, client_all):
    with Receiver() as receiver:
        # given an endpoint whose receiver answered 400 to three deliveries, one made before
        # a moment `middle` and two after it
        endpoint = _register(client_all, receiver)
        recover = reverse("webhook-endpoint-recover", args=[endpoint["id"]])
        receiver.script("/hook", [400])
        start = timezone.now()
        early = _settled(_publish(client_all, "early"), DeliveryStatus.FAILED)
        middle = timezone.now()
        late = [_settled(_publish(client_all, m), DeliveryStatus.FAILED)
                for m in ("late-1", "late-2")]
        assert len(receiver.at("/hook")) == 3
        jobs_before = Job.objects.filter(kind="webhook_delivery").count()

        # when a dry run asks how many failed since the start
        dry = client_all.post(recover, {"since": start.isoformat(), "dry_run": True},
                              format="json")

        # then it counts all three and sends nothing: no job, no request, still failed
        assert dry.status_code == 200, dry.content
        assert dry.json() == {"recovered": 3, "dry_run": True}
        assert Job.objects.filter(kind="webhook_delivery").count() == jobs_before
        assert Delivery.objects.filter(endpoint_id=endpoint["id"],
                                       status=DeliveryStatus.FAILED).count() == 3

        # when the receiver is fixed and the window [start, middle) is recovered
        receiver.script("/hook", [200])
        answer = client_all.post(recover, {"since": start.isoformat(),
                                           "until": middle.isoformat()}, format="json")

        # then only the early delivery is sent again, with its webhook-id
        assert answer.status_code == 202, answer.content
        assert answer.json() == {"recovered": 1, "dry_run": False}
        early = _settled(early.message.event_id, DeliveryStatus.DELIVERED)
        again = receiver.at("/hook")[3:]
        assert [r.message_id for r in again] == [early.message_id]
        assert receiver.at("/hook")[0].message_id == early.message_id
        assert again[0].verified_with == [endpoint["secret"]]
        assert [a["outcome"] for a in _attempts(client_all, early)] == ["gave_up", "delivered"]
        # and the two outside the window stay failed, not sent
        assert [Delivery.objects.get(pk=d.pk).status for d in late] == ["failed", "failed"]

        # when the rest is recovered (since `middle`, until now)
        answer = client_all.post(recover, {"since": middle.isoformat()}, format="json")

        # then those two are sent again, each with the webhook-id of its first send
        assert answer.status_code == 202, answer.content
        assert answer.json() == {"recovered": 2, "dry_run": False}
        for delivery in late:
            _settled(delivery.message.event_id, DeliveryStatus.DELIVERED)
        ids = [r.message_id for r in receiver.at("/hook")]
        assert len(ids) == 6
        assert sorted(ids[4:]) == sorted(d.message_id for d in late)
        assert sorted(ids[1:3]) == sorted(d.message_id for d in late)


def test_recover_on_a_disabled_endpoint_is_refused(celery_worker_thread, client_all):
    with Receiver() as receiver:
        # given an endpoint its owner disabled
        endpoint = _register(client_all, receiver)
        disabled = client_all.patch(reverse("webhook-endpoint-detail", args=[endpoint["id"]]),
                                    {"enabled": False}, format="json")
        assert disabled.status_code == 200, disabled.content

        # when a recovery is asked for
        answer = client_all.post(reverse("webhook-endpoint-recover", args=[endpoint["id"]]),
                                 {"since": timezone.now().isoformat()}, format="json")

        # then it is refused: enabling it is what resumes its deliveries
        error = assert_error(answer, 409, "endpoint_disabled")
        assert error["details"] == {"state": "disabled"}
        # and the owner's own disabling announced nothing (it knows)
        assert not Event.objects.filter(type="webhook_endpoint.disabled").exists()


# --- The circuit breaker ---------------------------------------------------------------------

def test_the_circuit_opens_parks_deliveries_then_one_probe_closes_it(
        celery_worker_thread, client_all, settings):
    # given a circuit that opens after 2 failures for 3 s, and health thresholds out of reach
    settings.WEBHOOK_CIRCUIT_FAILURES = 2
    settings.WEBHOOK_CIRCUIT_COOLDOWN_SECONDS = 3
    settings.WEBHOOK_DEGRADE_MIN_FAILURES = 1000
    settings.WEBHOOK_DISABLE_MIN_FAILURES = 1000
    with Receiver() as receiver:
        # and an endpoint whose receiver answers 500
        endpoint = _register(client_all, receiver)
        receiver.script("/hook", [500])

        # when two events fail
        failing = [_publish(client_all, "a"), _publish(client_all, "b")]

        # then the circuit opens
        open_until = wait_for(lambda: WebhookEndpoint.objects.get(
            pk=endpoint["id"]).circuit_open_until, message="the circuit to open")
        opened_at = open_until.timestamp() - 3
        assert _endpoint(client_all, endpoint["id"])["circuit_open_until"] is not None
        # the receiver will answer the probe after 1 s, then at once
        receiver.script("/hook", [Answer(200, delay=1), 200])

        # when three more events are published while it is open
        waiting = [_publish(client_all, m) for m in ("c", "d", "e")]

        # then every delivery of the endpoint waits parked, with a time for its next attempt,
        # having used no attempt for it
        def all_parked():
            rows = [_delivery(e) for e in failing + waiting]
            return all(d is not None and d.status == DeliveryStatus.PARKED
                       and d.next_attempt_at is not None for d in rows) and rows

        parked = wait_for(all_parked, message="the endpoint's deliveries parked")
        assert [d.attempts for d in parked] == [1, 1, 0, 0, 0]
        assert all(d.next_attempt_at <= open_until + timedelta(seconds=1)
                   for d in parked)

        # then they are all delivered once it closes
        delivered = [_settled(e, DeliveryStatus.DELIVERED) for e in failing + waiting]
        received = receiver.at("/hook")
        times = [round(r.at - opened_at, 2) for r in received]
        print(f"requests, seconds after the circuit opened: {times}")
        # and no request reached the receiver during the cool-down
        assert [r for r in received if opened_at < r.at < open_until.timestamp()] == []
        # and the first request after it was the one probe: nothing else while it was answered
        after = [r for r in received if r.at >= open_until.timestamp()]
        probe = after[0]
        assert [r for r in after[1:] if r.at < probe.at + 1] == []
        assert len(received) == 2 + 5
        # and the circuit is closed, the endpoint healthy
        shown = _endpoint(client_all, endpoint["id"])
        assert shown["circuit_open_until"] is None
        assert shown["consecutive_failures"] == 0 and shown["state"] == "active"
        # and the waiting used no attempt: one failure and one delivery for the first two,
        # one delivery for the others
        assert [d.attempts for d in delivered] == [2, 2, 1, 1, 1]
        jobs = [_job(d, JobStatus.SUCCEEDED) for d in delivered]
        assert [j.attempts for j in jobs] == [2, 2, 1, 1, 1]


# --- The SSRF guard --------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.2:8000/hook",  # loopback; only 127.0.0.1/32 is allowed
    "http://[::1]:8000/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://10.0.0.1/",  # private
    "ftp://127.0.0.1:8000/hook",  # not http(s)
    "http://user:pass@127.0.0.1:8000/hook",  # credentials in the URL
])
def test_registration_refuses_an_unsafe_url(client_all, url):
    # given a URL the guard refuses
    # when an endpoint is registered with it
    answer = client_all.post(reverse("webhook-endpoint-list"), {"url": url}, format="json")

    # then 422 unsafe_url, naming it, and nothing is stored
    error = assert_error(answer, 422, "unsafe_url")
    assert error["details"] == {"url": url}
    assert not WebhookEndpoint.objects.exists()


def test_registration_refuses_a_name_that_does_not_resolve(client_all):
    # given a name in a domain reserved never to resolve (the real resolver answers)
    url = "https://no-such-host.invalid/hook"

    # when an endpoint is registered with it, then 422 unresolvable_url
    answer = client_all.post(reverse("webhook-endpoint-list"), {"url": url}, format="json")
    assert_error(answer, 422, "unresolvable_url")
    assert not WebhookEndpoint.objects.exists()


def test_changing_the_url_is_checked_too(client_all):
    with Receiver() as receiver:
        # given a registered endpoint
        endpoint = _register(client_all, receiver)

        # when its URL is changed to a private address
        answer = client_all.patch(reverse("webhook-endpoint-detail", args=[endpoint["id"]]),
                                  {"url": "http://192.168.1.10/hook"}, format="json")

        # then 422 unsafe_url, and the URL is unchanged
        assert_error(answer, 422, "unsafe_url")
        assert WebhookEndpoint.objects.get(pk=endpoint["id"]).url == receiver.url()


def test_a_name_rebound_to_a_refused_address_after_registration_is_not_reached(
        celery_worker_thread, client_all, monkeypatch):
    # given a receiver listening on every loopback address: a request to 127.0.0.2 would
    # arrive (checked below), so a guard that let it through would be seen
    with Receiver(bind="0.0.0.0") as receiver:  # noqa: S104 - the test's own receiver
        probe = http.client.HTTPConnection("127.0.0.2", receiver.port, timeout=5)
        probe.request("POST", "/reachable", body=b"{}")
        assert probe.getresponse().status == 200
        probe.close()
        assert len(receiver.at("/reachable")) == 1

        # and a DNS server that answers 127.0.0.1 for rebind.test the first time, and
        # 127.0.0.2 (refused) afterwards
        lookups: list[str] = []

        def rebinding_lookup(host: str, port: int) -> list[str]:
            lookups.append(host)
            return ["127.0.0.1"] if len(lookups) == 1 else ["127.0.0.2"]

        monkeypatch.setattr(ssrf, "lookup", rebinding_lookup)

        # when an endpoint is registered with that name (it passes: 127.0.0.1), and an event
        # published
        endpoint = _register(client_all, receiver,
                             url=f"http://rebind.test:{receiver.port}/hook")
        assert lookups == ["rebind.test"]
        event_id = _publish(client_all)

        # then the delivery fails at once, the guard refusing the address the name now has
        delivery = _settled(event_id, DeliveryStatus.FAILED)
        [attempt] = _attempts(client_all, delivery)
        assert attempt["outcome"] == "gave_up" and attempt["http_status"] is None
        assert attempt["error_type"] == "UnsafeAddress"
        assert "127.0.0.2" in attempt["error_message"]
        assert _job(delivery, JobStatus.DEAD).attempts == 1
        # and nothing reached the receiver
        assert receiver.at("/hook") == []
        # and the name was looked up once for the connection (none behind the guard's back)
        assert lookups == ["rebind.test", "rebind.test"]
        assert _endpoint(client_all, endpoint["id"])["state"] == "active"


def test_an_address_allowed_at_registration_and_refused_since_is_not_reached(
        celery_worker_thread, client_all, settings):
    with Receiver() as receiver:
        # given an endpoint registered at 127.0.0.1 while that network was allowed
        _register(client_all, receiver)

        # when the network is no longer allowed and an event is published
        settings.WEBHOOK_ALLOWED_NETWORKS = []
        event_id = _publish(client_all)

        # then the guard refuses the literal address at delivery too: one attempt, permanent,
        # and the receiver got nothing
        delivery = _settled(event_id, DeliveryStatus.FAILED)
        [attempt] = _attempts(client_all, delivery)
        assert (attempt["outcome"], attempt["error_type"]) == ("gave_up", "UnsafeAddress")
        assert receiver.at("/hook") == []


def test_a_name_resolving_to_an_allowed_address_is_delivered_with_one_lookup(
        celery_worker_thread, client_all, monkeypatch):
    with Receiver() as receiver:
        # given a DNS server that answers 127.0.0.1 (allowed) for steady.test
        lookups: list[str] = []

        def lookup(host: str, port: int) -> list[str]:
            lookups.append(host)
            return ["127.0.0.1"]

        monkeypatch.setattr(ssrf, "lookup", lookup)
        _register(client_all, receiver, url=f"http://steady.test:{receiver.port}/hook")

        # when an event is published
        delivery = _settled(_publish(client_all), DeliveryStatus.DELIVERED)

        # then it is delivered to the checked address, the name looked up once for it
        assert len(receiver.at("/hook")) == 1
        assert receiver.at("/hook")[0].headers["host"] == f"steady.test:{receiver.port}"
        assert lookups == ["steady.test", "steady.test"]
        assert delivery.attempts == 1


# --- Effects once ----------------------------------------------------------------------------

def test_a_delivered_delivery_is_not_sent_again_when_its_job_is_replayed(
        celery_worker_thread, client_all):
    with Receiver() as receiver:
        # given a delivered delivery
        _register(client_all, receiver)
        delivery = _settled(_publish(client_all), DeliveryStatus.DELIVERED)
        _job(delivery, JobStatus.SUCCEEDED)
        assert len(receiver.at("/hook")) == 1

        # when its job is made dead by hand and replayed through the API
        Job.objects.filter(pk=delivery.job_id).update(status=JobStatus.DEAD)
        replayed = client_all.post(reverse("job-retry", args=[delivery.job_id]))
        assert replayed.status_code == 202, replayed.content

        # then the job runs again and succeeds without sending
        job = wait_for(lambda: Job.objects.filter(pk=delivery.job_id, replays=1,
                                                  status=JobStatus.SUCCEEDED).first(),
                       message="the replayed job to finish")
        assert job.result["sent"] is False
        assert job.result["delivery"] == "delivered"
        assert "not sent again" in job.result["note"]
        assert len(receiver.at("/hook")) == 1
        assert Delivery.objects.get(pk=delivery.pk).attempts == 1


# --- Fan-out ---------------------------------------------------------------------------------

def test_one_event_fans_out_once_to_its_subscribers_only(celery_worker_thread, client_all):
    with Receiver() as receiver:
        # given three endpoints: one for demo.ping, one for every type, one for another type
        ping = _register(client_all, receiver, "/ping")
        every = _register(client_all, receiver, "/every", event_types=None)
        other = _register(client_all, receiver, "/other", event_types=["product.updated"])

        # when a demo.ping event is published
        event_id = _publish(client_all)

        # then exactly two deliveries are made, to the two subscribers, by one fan-out job
        for endpoint in (ping, every):
            _settled(event_id, DeliveryStatus.DELIVERED, endpoint_id=endpoint["id"])
        deliveries = Delivery.objects.filter(message__event_id=event_id)
        assert sorted(str(d.endpoint_id) for d in deliveries) == sorted([ping["id"],
                                                                          every["id"]])
        fanouts = list(Job.objects.filter(event_id=event_id, kind="webhook_fanout"))
        assert len(fanouts) == 1
        assert len(receiver.at("/ping")) == len(receiver.at("/every")) == 1
        assert receiver.at("/other") == []
        assert not Delivery.objects.filter(endpoint_id=other["id"]).exists()
        assert {r.message_id for r in receiver.received} == {deliveries[0].message_id}
        fanout = wait_for(lambda: Job.objects.filter(pk=fanouts[0].pk,
                                                     status=JobStatus.SUCCEEDED).first(),
                          message="the fan-out job to finish")
        assert fanout.result["deliveries"] == 2

        # when an endpoint for every type is registered after the event, and the fan-out job
        # runs again (made dead by hand and replayed)
        late = _register(client_all, receiver, "/late", event_types=None)
        Job.objects.filter(pk=fanout.pk).update(status=JobStatus.DEAD)
        replayed = client_all.post(reverse("job-retry", args=[fanout.pk]))
        assert replayed.status_code == 202, replayed.content

        # then it makes nothing: not a second delivery to the first two, none to the late one
        fanout = wait_for(lambda: Job.objects.filter(pk=fanout.pk, replays=1,
                                                     status=JobStatus.SUCCEEDED).first(),
                          message="the replayed fan-out job to finish")
        assert fanout.result["deliveries"] == 0
        assert Delivery.objects.filter(message__event_id=event_id).count() == 2
        assert not Delivery.objects.filter(endpoint_id=late["id"]).exists()
        assert receiver.at("/late") == []


def test_an_event_reaches_only_the_endpoints_whose_key_may_see_it(celery_worker_thread,
                                                                  client_all, make_client):
    # given the publisher's endpoint, another key's endpoint for every type, and an admin
    # key's endpoint (a key sees only its own events; admin sees every key's: README
    # "Security")
    other = make_client(["webhooks:manage", "events:publish", "events:read"],
                        name="other tenant")
    admin = make_client(name="admin")  # every scope, admin included
    with Receiver() as receiver:
        own = _register(client_all, receiver, "/own")
        foreign = _register(other, receiver, "/foreign", event_types=None)
        watching = _register(admin, receiver, "/admin")

        # when the publisher publishes an event
        event_id = _publish(client_all, "private to its key")

        # then its own endpoint and the admin's get it, the other key's does not
        for endpoint in (own, watching):
            _settled(event_id, DeliveryStatus.DELIVERED, endpoint_id=endpoint["id"])
        fanout = wait_for(lambda: Job.objects.filter(event_id=event_id, kind="webhook_fanout",
                                                     status=JobStatus.SUCCEEDED).first(),
                          message="the fan-out job to finish")
        assert fanout.result["deliveries"] == 2
        assert not Delivery.objects.filter(endpoint_id=foreign["id"]).exists()
        assert receiver.at("/foreign") == []
        assert len(receiver.at("/own")) == len(receiver.at("/admin")) == 1

        # and the other key's own events still reach its endpoint (and not the publisher's)
        theirs = _publish(other, "theirs")
        _settled(theirs, DeliveryStatus.DELIVERED, endpoint_id=foreign["id"])
        assert not Delivery.objects.filter(message__event_id=theirs,
                                           endpoint_id=own["id"]).exists()


def test_an_event_type_nobody_subscribes_to_gets_no_fan_out_job(client_all):
    with Receiver() as receiver:
        # given endpoints subscribed to demo.ping only
        _register(client_all, receiver, "/a")
        _register(client_all, receiver, "/b")

        # when a product.updated event is published
        event_id = _publish(client_all, event_type="product.updated", payload={
            "product_id": str(uuid.uuid4()), "category": "coffee"})

        # then its own handler's job is made, and no fan-out job
        kinds = sorted(Job.objects.filter(event_id=event_id).values_list("kind", flat=True))
        assert kinds and "webhook_fanout" not in kinds
        assert not Delivery.objects.exists()


# --- The test ping ---------------------------------------------------------------------------

def test_the_test_ping_is_delivered_now_with_its_attempt_in_the_answer(client_all):
    with Receiver() as receiver:
        # given an endpoint
        endpoint = _register(client_all, receiver)

        # when its test ping is asked for
        answer = client_all.post(reverse("webhook-endpoint-test", args=[endpoint["id"]]))

        # then the answer says delivered, with the attempt's facts
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert body["delivered"] is True
        assert body["delivery"]["status"] == "delivered"
        assert body["delivery"]["event_type"] == "webhook.test"
        attempt = body["attempt"]
        assert (attempt["number"], attempt["outcome"], attempt["http_status"]) == (
            1, "delivered", 200)
        assert isinstance(attempt["latency_ms"], int) and attempt["latency_ms"] >= 0
        # and the receiver got it, signed
        [got] = receiver.at("/hook")
        assert got.verified_with == [endpoint["secret"]]
        assert got.json["type"] == "webhook.test"
        assert got.message_id == body["delivery"]["message_id"]


def test_a_failed_test_ping_says_so_and_leaves_the_endpoint_health_alone(client_all):
    with Receiver() as receiver:
        # given an endpoint whose receiver answers 500
        endpoint = _register(client_all, receiver)
        receiver.script("/hook", [Answer(500, body=b"down for maintenance")])

        # when its test ping is asked for
        answer = client_all.post(reverse("webhook-endpoint-test", args=[endpoint["id"]]))

        # then the answer says not delivered, the attempt gave up (no retry), with its facts
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert body["delivered"] is False
        assert body["delivery"]["status"] == "failed"
        attempt = body["attempt"]
        assert (attempt["outcome"], attempt["http_status"]) == ("gave_up", 500)
        assert attempt["response_excerpt"] == "down for maintenance"
        assert len(receiver.at("/hook")) == 1
        # and the endpoint's health did not move
        shown = _endpoint(client_all, endpoint["id"])
        assert shown["state"] == "active"
        assert shown["consecutive_failures"] == 0
        assert shown["last_failure_at"] is None and shown["failing_since"] is None
        assert shown["circuit_open_until"] is None

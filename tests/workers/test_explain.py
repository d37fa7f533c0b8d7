"""Why isn't this job running? (workers/explain.py, GET /api/v1/jobs/{id}/explain)

Every reason comes from the real situation, made through the API and the real services on the
real PostgreSQL and Redis broker: the session's in-process worker where a job must run (it
runs, fails, retries, dies; a webhook's circuit opens, its rate limit defers), a private broker
prefix no worker consumes where a job must stay on the broker (tests/conftest.py,
`private_broker`), and an unreachable broker port for a publish the broker never got. No
worker writes its presence in this process's Redis (the in-process worker does not run the
consumer bootstep that does), so a job on the broker here has no consumer. A worker process
killed mid-job (`orphaned`), and jobs behind a busy worker seen consuming their queue
(`waiting_in_queue`), are in tests/faults/test_explain.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from domain.access.models import Scopes
from domain.bulk.models import BulkRun
from domain.jobs.models import Job, JobStatus
from domain.jobs.outbox import outbox_relay
from domain.notifications.models import Delivery, DeliveryStatus, WebhookEndpoint
from tests.broker_utils import UNREACHABLE_BROKER, broker_at
from tests.bulk_utils import make_products
from tests.conftest import assert_error, wait_for
from tests.factories import JobFactory
from tests.webhook_receiver import Receiver
from tests.workers.explain_jobs import PROBE

SHAPE = {"job", "status", "reason", "message", "details", "checked_at"}


@pytest.fixture
def client(make_client):
    """A key that triggers and reads jobs, publishes events and manages webhooks and bulk
    runs (not admin: it sees its own rows only)."""
    return make_client([Scopes.JOBS_READ, Scopes.JOBS_WRITE, Scopes.EVENTS_PUBLISH,
                        Scopes.WEBHOOKS_MANAGE, Scopes.BULK_WRITE, Scopes.BULK_READ],
                       name="explainer")


def explain(client, job_id) -> dict:
    response = client.get(reverse("job-explain", args=[job_id]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == SHAPE, body
    assert body["job"] == str(job_id)
    assert body["message"].endswith(".") and "\n" not in body["message"], body["message"]
    assert datetime.fromisoformat(body["checked_at"]) <= timezone.now()
    return body


def trigger(client, params: dict | None = None, **fields) -> dict:
    response = client.post(reverse("job-list"), {"kind": PROBE.name, "params": params or {},
                                                 **fields}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


# --- Before it runs: scheduled, cancelled, not sent, waiting ------------------------------------

@pytest.mark.django_db
def test_a_job_to_run_later_is_scheduled_and_once_cancelled_says_so(client):
    # given a job triggered to run in an hour
    run_at = timezone.now() + timedelta(hours=1)
    job = trigger(client, run_at=run_at.isoformat())

    # then it is scheduled, at that time
    body = explain(client, job["id"])
    assert (body["status"], body["reason"]) == ("queued", "scheduled")
    assert instant(body["details"]["run_at"]) == run_at.replace(microsecond=run_at.microsecond)
    assert body["details"]["queue"] == "events"
    assert "scheduled to run at" in body["message"] and "(in 60 minutes)" in body["message"]

    # when it is cancelled, then it says so and how to run it after all
    assert client.post(reverse("job-cancel", args=[job["id"]])).status_code == 200
    body = explain(client, job["id"])
    assert (body["status"], body["reason"]) == ("cancelled", "cancelled")
    assert f"/api/v1/jobs/{job['id']}/retry" in body["message"]
    assert instant(body["details"]["finished_at"]) <= timezone.now()


@pytest.mark.django_db
def test_a_job_published_while_the_broker_is_down_is_not_sent_until_the_relay_sends_it(
        client, private_broker):
    # given a job triggered while the broker is unreachable (accepted: it is in the outbox)
    with broker_at(UNREACHABLE_BROKER):
        job = trigger(client)
        # then it is not sent, and the broker is not reachable to explain either: the answer
        # comes from the database
        body = explain(client, job["id"])
    assert (body["status"], body["reason"]) == ("queued", "not_sent")
    assert body["details"]["broker_reachable"] is False and body["details"]["depth"] is None
    assert "never handed to the broker" in body["message"]
    assert "the outbox relay sends it" in body["message"]
    assert "does not answer now either" in body["message"]
    assert instant(body["details"]["relay_at"]) <= timezone.now()

    # when the broker is back, it is still not sent until the relay runs
    body = explain(client, job["id"])
    assert body["reason"] == "not_sent" and body["details"]["broker_reachable"] is True

    # when the relay sends it, then it is on the broker, where no worker consumes its queue
    # (none writes its presence here: worker processes are tests/faults/test_explain.py's)
    assert outbox_relay(grace_seconds=0) == 1
    body = explain(client, job["id"])
    assert body["reason"] == "no_consumer", body
    assert (body["details"]["depth"], body["details"]["consumers"]) == (1, [])


@pytest.mark.django_db
def test_jobs_on_a_queue_no_worker_consumes_are_no_consumer_broker_down_or_not(
        client, private_broker, django_capture_on_commit_callbacks):
    # given three jobs sent to the events queue, and no worker seen consuming it
    with django_capture_on_commit_callbacks(execute=True):
        jobs = [trigger(client) for _ in range(3)]

    # then each is on the broker with no consumer: the queue's depth, the oldest's age
    body = explain(client, jobs[-1]["id"])
    assert (body["status"], body["reason"]) == ("queued", "no_consumer"), body
    details = body["details"]
    assert (details["queue"], details["depth"], details["consumers"]) == ("events", 3, [])
    assert details["oldest_age_seconds"] >= details["waiting_seconds"] >= 0
    assert "No live worker consumes its queue 'events'" in body["message"]
    assert "3 messages in it" in body["message"]
    assert "celery -A config worker -Q events" in body["message"]

    # when the broker goes away, the answer still comes, from the database and the presence
    with broker_at(UNREACHABLE_BROKER):
        body = explain(client, jobs[-1]["id"])
    assert body["reason"] == "no_consumer" and body["details"]["depth"] is None
    assert "the broker does not answer" in body["message"]


@pytest.mark.django_db
def test_the_jobs_of_a_paused_queue_are_queue_paused_whatever_else_they_wait_for(
        client, make_client, private_broker, django_capture_on_commit_callbacks):
    ops = make_client([Scopes.ADMIN, Scopes.JOBS_READ], name="ops")
    # given an operator paused the events queue, saying why
    paused = ops.post(reverse("queue-pause", args=["events"]),
                      {"reason": "the receivers are migrating"}, format="json")
    assert paused.status_code == 200, paused.content

    # when a job of that queue is triggered, and another one to run in an hour
    with django_capture_on_commit_callbacks(execute=True):
        job = trigger(client)
    later = trigger(client, run_at=(timezone.now() + timedelta(hours=1)).isoformat())

    # then both are held by the pause: who paused it, when and why, and how to resume it
    body = explain(client, job["id"])
    assert (body["status"], body["reason"]) == ("queued", "queue_paused"), body
    details = body["details"]
    assert (details["queue"], details["paused_by"], details["pause_reason"]) == (
        "events", paused.json()["paused_by"], "the receivers are migrating")
    assert instant(details["paused_at"]) == instant(paused.json()["paused_at"])
    assert "POST /api/v1/queues/events/resume" in body["message"]
    assert "the receivers are migrating" in body["message"]
    assert explain(client, later["id"])["reason"] == "queue_paused"

    # when the queue is resumed, each waits for its own reason again
    assert ops.post(reverse("queue-resume", args=["events"])).status_code == 200
    assert explain(client, later["id"])["reason"] == "scheduled"
    body = explain(client, job["id"])  # (sent when it was made: the pause held it on the broker)
    assert (body["reason"], body["details"]["depth"]) == ("no_consumer", 1), body


@pytest.mark.django_db
def test_a_job_of_a_kind_no_longer_registered_has_no_known_queue(client):
    # given a job left on the broker by a kind a later deploy removed
    job = JobFactory(kind="retired_kind", api_key=client.api_key, enqueued_at=timezone.now())

    # then it waits for a worker that knows the kind; no queue, so no consumer to judge
    body = explain(client, job.pk)
    assert (body["reason"], body["details"]["queue"], body["details"]["consumers"]) == (
        "waiting_in_queue", None, None)
    assert "'retired_kind' (not registered in this process" in body["message"]


# --- On a worker: running, succeeded, backoff, dead ---------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_job_on_a_worker_is_running_then_succeeded(celery_worker_thread, client):
    # given a job that takes a few seconds on the worker
    job = trigger(client, {"sleep": 3})
    wait_for(lambda: Job.objects.filter(pk=job["id"], status=JobStatus.RUNNING).exists(),
             message="the job to start")

    # then it is running: on which worker, since when, and its lease
    body = explain(client, job["id"])
    row = Job.objects.get(pk=job["id"])
    assert (body["status"], body["reason"]) == ("running", "running")
    details = body["details"]
    assert details["worker"] == row.worker and row.worker
    assert instant(details["since"]) == row.started_at
    assert instant(details["lease_expires_at"]) > timezone.now() - timedelta(seconds=1)
    assert (details["attempt"], details["max_attempts"]) == (1, 2)
    assert f"running on {row.worker}" in body["message"]

    # when it is done, then it succeeded, on that worker
    wait_for(lambda: Job.objects.filter(pk=job["id"], status=JobStatus.SUCCEEDED).exists(),
             message="the job to succeed")
    body = explain(client, job["id"])
    assert (body["status"], body["reason"]) == ("succeeded", "succeeded")
    assert body["details"]["worker"] == row.worker
    assert "succeeded" in body["message"] and "(attempt 1 of 2)" in body["message"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_failed_attempt_is_backoff_with_its_error_and_a_permanent_one_dead(
        celery_worker_thread, client):
    # given a job whose attempt fails with a transient error, and one with a permanent error
    retried = trigger(client, {"fail": "transient"})
    dead = trigger(client, {"fail": "permanent"})

    # then the first waits for its next attempt (in an hour, by its policy), with the error
    wait_for(lambda: Job.objects.filter(pk=retried["id"], status=JobStatus.RETRYING).exists(),
             message="the first attempt to fail")
    body = explain(client, retried["id"])
    assert (body["status"], body["reason"]) == ("retrying", "backoff")
    details = body["details"]
    assert details["error"] == {"type": "TransientError",
                                "message": "the other side is down (on purpose)"}
    assert instant(details["next_retry_at"]) > timezone.now() + timedelta(minutes=59)
    assert (details["attempt"], details["max_attempts"]) == (1, 2)
    assert "TransientError: the other side is down (on purpose)" in body["message"]
    assert "the next attempt is at" in body["message"]

    # and the second is dead, with its last error and how to replay it
    wait_for(lambda: Job.objects.filter(pk=dead["id"], status=JobStatus.DEAD).exists(),
             message="the second job to die")
    body = explain(client, dead["id"])
    assert (body["status"], body["reason"]) == ("dead", "dead")
    assert body["details"]["error"]["type"] == "PermanentError"
    assert "PermanentError: this input can never work (on purpose)" in body["message"]
    assert f"/api/v1/jobs/{dead['id']}/retry" in body["message"]


# --- Webhook deliveries: endpoint disabled, circuit open, rate limited -------------------------

def _register(client, receiver: Receiver, **fields) -> dict:
    created = client.post(reverse("webhook-endpoint-list"), {
        "url": receiver.url("/hook"), "event_types": ["demo.ping"], **fields}, format="json")
    assert created.status_code == 201, created.content
    receiver.trust(created.json()["secret"])
    return created.json()


def _publish(client, message: str = "hi") -> str:
    published = client.post(reverse("event-publish"), {
        "type": "demo.ping", "payload": {"message": message}}, format="json")
    assert published.status_code == 202, published.content
    return published.json()["id"]


def _delivery_of(event_id: str) -> Delivery | None:
    return Delivery.objects.filter(message__event_id=event_id).first()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_delivery_of_an_endpoint_its_owner_disabled_is_endpoint_disabled(
        celery_worker_thread, client):
    with Receiver() as receiver:
        # given an endpoint whose receiver fails, and a delivery waiting for its retry
        endpoint = _register(client, receiver)
        receiver.script("/hook", [500])
        event_id = _publish(client)
        delivery = wait_for(lambda: (d := _delivery_of(event_id)) is not None
                            and d.status == DeliveryStatus.RETRYING and d,
                            message="the delivery to fail once")

        # when its owner disables the endpoint
        changed = client.patch(reverse("webhook-endpoint-detail", args=[endpoint["id"]]),
                               {"enabled": False}, format="json")
        assert changed.status_code == 200, changed.content

        # then the delivery's job (cancelled, or finished finding the endpoint disabled) is
        # explained by the endpoint, with how to send it after all
        wait_for(lambda: Job.objects.filter(pk=delivery.job_id, status__in=(
            JobStatus.CANCELLED, JobStatus.SUCCEEDED)).exists(), message="the job to stop")
        body = explain(client, delivery.job_id)
    assert body["status"] in ("cancelled", "succeeded")
    assert body["reason"] == "endpoint_disabled", body
    details = body["details"]
    assert (details["endpoint"], details["endpoint_state"], details["delivery"],
            details["delivery_status"]) == (endpoint["id"], "disabled", str(delivery.pk),
                                             "parked")
    assert details["queue"] == "notifications"
    assert receiver.url("/hook") in body["message"]
    assert f"PATCH /api/v1/webhook-endpoints/{endpoint['id']}" in body["message"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_delivery_to_an_endpoint_whose_circuit_is_open_is_circuit_open(
        celery_worker_thread, client, settings):
    # given a circuit that opens after 2 failures for a minute (health thresholds out of reach)
    settings.WEBHOOK_CIRCUIT_FAILURES = 2
    settings.WEBHOOK_CIRCUIT_COOLDOWN_SECONDS = 60
    settings.WEBHOOK_DEGRADE_MIN_FAILURES = 1000
    settings.WEBHOOK_DISABLE_MIN_FAILURES = 1000
    with Receiver() as receiver:
        endpoint = _register(client, receiver)
        receiver.script("/hook", [500])
        # when two deliveries fail, the circuit opens
        _publish(client, "a")
        _publish(client, "b")
        open_until = wait_for(lambda: WebhookEndpoint.objects.get(
            pk=endpoint["id"]).circuit_open_until, message="the circuit to open")

        # and a delivery published meanwhile is taken by the worker and put back to wait
        event_id = _publish(client, "c")

        def deferred():
            delivery = _delivery_of(event_id)
            if delivery is None or delivery.status != DeliveryStatus.PARKED:
                return None
            return Job.objects.filter(pk=delivery.job_id, status=JobStatus.QUEUED,
                                      run_at__gt=timezone.now()).first()

        job = wait_for(deferred, message="the third delivery to be deferred")
        body = explain(client, job.pk)
    # then it waits for the circuit, without using an attempt
    assert (body["status"], body["reason"]) == ("queued", "circuit_open"), body
    details = body["details"]
    assert instant(details["circuit_open_until"]) == open_until
    assert details["consecutive_failures"] >= 2
    assert instant(details["retry_at"]) == job.run_at
    assert details["endpoint_state"] == "active" and details["delivery_status"] == "parked"
    assert "circuit" in body["message"] and "without using an attempt" in body["message"]
    assert job.attempts == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_delivery_over_its_endpoints_rate_limit_is_rate_limited(celery_worker_thread,
                                                                   client):
    with Receiver() as receiver:
        # given an endpoint that takes one message a second
        _register(client, receiver, rate_limit=1)
        # when twelve events are published at once
        event_ids = {_publish(client, f"m{n}") for n in range(12)}

        # then deliveries past the rate wait, their jobs put back until a slot frees up; one
        # of them explained while it waits is rate_limited (a wait lasts a second or so, so
        # the test asks about the next one should the worker take one back first)
        def explained_waiting():
            now = timezone.now()
            waiting = (Delivery.objects.filter(message__event_id__in=event_ids,
                                               status=DeliveryStatus.PENDING,
                                               next_attempt_at__isnull=False)
                       .values_list("job_id", flat=True))
            job = Job.objects.filter(pk__in=list(waiting), status=JobStatus.QUEUED,
                                     run_at__gt=now + timedelta(milliseconds=300)).first()
            if job is None:
                return None
            body = explain(client, job.pk)
            return body if body["reason"] == "rate_limited" else None

        body = wait_for(explained_waiting, timeout=60, interval=0.05,
                        message="a delivery waiting for its endpoint's rate")
    details = body["details"]
    assert body["status"] == "queued"
    assert details["rate_limit"] == 1 and details["delivery_status"] == "pending"
    assert instant(details["retry_at"]) > instant(body["checked_at"])
    assert "1 message a second" in body["message"]


# --- Bulk runs ----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_job_of_a_paused_bulk_run_is_bulk_paused(client, private_broker,
                                                    django_capture_on_commit_callbacks):
    # given a bulk run waiting for a worker
    make_products(3)
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(reverse("bulk-run-list"), {
            "operation": "catalog.reprice", "args": {"category": "coffee", "percent": 10}},
            format="json")
    assert started.status_code == 202, started.content
    run = started.json()
    body = explain(client, run["job"]["id"])
    assert (body["reason"], body["details"]["queue"], body["details"]["depth"]) == (
        "no_consumer", "bulk", 1)

    # when it is paused (its job, not taken by any worker, is cancelled at once)
    paused = client.post(reverse("bulk-run-pause", args=[run["id"]]))
    assert paused.status_code == 202, paused.content

    # then its job is explained by the paused run, not as merely cancelled
    body = explain(client, run["job"]["id"])
    assert (body["status"], body["reason"]) == ("cancelled", "bulk_paused")
    details = body["details"]
    assert (details["bulk_run"], details["operation"], details["rows_done"]) == (
        run["id"], "catalog.reprice", 0)
    assert instant(details["paused_at"]) == BulkRun.objects.get(pk=run["id"]).updated_at
    assert f"/api/v1/bulk-operations/{run['id']}/resume" in body["message"]


# --- Who may ask --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_explain_follows_the_jobs_visibility_and_scope(client, make_client):
    job = trigger(client, run_at=(timezone.now() + timedelta(hours=1)).isoformat())
    url = reverse("job-explain", args=[job["id"]])

    # another key does not see it; an admin key does
    assert_error(make_client([Scopes.JOBS_READ], name="other").get(url), 404, "not_found")
    assert make_client([Scopes.JOBS_READ, Scopes.ADMIN], name="ops").get(url).status_code == 200
    # a key without jobs:read is refused; no key is 401
    assert_error(make_client([Scopes.EVENTS_PUBLISH], name="pub").get(url), 403)
    from rest_framework.test import APIClient
    assert APIClient().get(url).status_code == 401
    # an id nobody has is 404
    missing = reverse("job-explain", args=["00000000-0000-4000-8000-000000000000"])
    assert_error(client.get(missing), 404, "not_found")


@pytest.mark.django_db
def test_the_schema_documents_the_answer():
    from django.test import Client

    document = Client().get("/api/schema?format=json").json()
    operation = document["paths"]["/api/v1/jobs/{job_id}/explain"]["get"]
    assert operation["operationId"] == "jobs_explain"
    assert {"200", "401", "403", "404", "503"} <= set(operation["responses"])
    schema = document["components"]["schemas"]["JobExplanation"]
    assert set(schema["properties"]) == SHAPE
    reason = schema["properties"]["reason"]["allOf"][0]["$ref"]  # the enum, as a component
    reasons = document["components"]["schemas"][reason.rsplit("/", 1)[-1]]["enum"]
    assert set(reasons) == {"running", "orphaned", "bulk_paused", "endpoint_disabled",
                            "succeeded", "dead", "cancelled", "queue_paused", "circuit_open",
                            "rate_limited", "backoff", "scheduled", "not_sent", "no_consumer",
                            "waiting_in_queue"}


# --- The admin's job page -----------------------------------------------------------------------

@pytest.mark.django_db
def test_the_admin_job_page_shows_the_same_explanation(client, operator):
    job = trigger(client, run_at=(timezone.now() + timedelta(hours=1)).isoformat())
    body = explain(client, job["id"])

    page = operator.get(reverse("admin:jobs_job_change", args=[job["id"]]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Why (not) running" in text
    assert "scheduled: It is scheduled to run at" in text
    assert body["message"].split(" (in ")[0] in text

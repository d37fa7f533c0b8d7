"""/api/v1/queues: the list, one queue, pause and resume, through real keys, with the broker,
the database and the workers' presence real (the workers themselves: test_steering.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from config.celery import app
from domain.access.models import AuditEntry, Scopes
from domain.common import redis as project_redis
from domain.jobs.models import JobStatus, QueuePause
from tests.broker_utils import UNREACHABLE_BROKER, broker_at
from tests.conftest import assert_error
from tests.factories import JobFactory
from workers.presence import forget, heartbeat

pytestmark = pytest.mark.django_db

QUEUE_FIELDS = {"name", "paused", "paused_at", "paused_by", "reason", "depth", "waiting",
                "oldest_age_seconds", "consumers"}


@pytest.fixture
def admin(make_client):
    return make_client([Scopes.ADMIN], name="ops-key")


@pytest.fixture
def a_worker():
    """A worker's heartbeat (as workers/steering.py writes it), consuming events and cache."""
    heartbeat(hostname="w1@test", pid=7, queues=["events", "cache"],
              configured=["events", "cache"])
    yield "w1@test"
    forget("w1@test")


def test_the_list_has_every_queue_with_its_depth_waiting_jobs_and_consumers(
        admin, private_broker, a_worker):
    # given two cache jobs waiting (the older due two minutes ago) and one not yet due, a
    # message on the cache queue, and a worker consuming events and cache
    now = timezone.now()
    JobFactory(kind="cache_invalidation", created_at=now - timedelta(minutes=2))
    JobFactory(kind="cache_invalidation", created_at=now - timedelta(seconds=5))
    JobFactory(kind="cache_invalidation", run_at=now + timedelta(hours=1))
    app.send_task("conveyor.cache.invalidate", args=["x"], queue="cache")

    body = admin.get(reverse("queue-list")).json()

    assert [q["name"] for q in body] == ["events", "notifications", "bulk", "cache",
                                         "maintenance"]
    queues = {q["name"]: q for q in body}
    assert all(set(q) == QUEUE_FIELDS for q in body)
    cache = queues["cache"]
    assert (cache["paused"], cache["depth"], cache["waiting"], cache["consumers"]) == (
        False, 1, 2, ["w1@test"])
    assert 119 <= cache["oldest_age_seconds"] <= 180
    assert (cache["paused_at"], cache["paused_by"], cache["reason"]) == (None, None, None)
    bulk = queues["bulk"]
    assert (bulk["depth"], bulk["waiting"], bulk["oldest_age_seconds"], bulk["consumers"]) == (
        0, 0, None, [])


def test_pause_and_resume_answer_the_queue_and_are_audited(admin, private_broker):
    # when an admin key pauses the bulk queue with a reason
    response = admin.post(reverse("queue-pause", args=["bulk"]),
                          {"reason": "reindexing tonight"}, format="json")

    # then the answer is the queue, paused, by that key, for that reason
    assert response.status_code == 200, response.content
    queue = response.json()
    assert queue["name"] == "bulk" and queue["paused"] is True
    assert queue["paused_by"] == f"ops-key ({admin.api_key.prefix}…)"
    assert queue["reason"] == "reindexing tonight" and queue["paused_at"].endswith("Z")
    assert QueuePause.objects.filter(queue="bulk").exists()
    # and the one read shows it
    assert admin.get(reverse("queue-detail", args=["bulk"])).json()["paused"] is True

    # when it is paused again (no body), then resumed twice
    again = admin.post(reverse("queue-pause", args=["bulk"]))
    assert again.status_code == 200 and again.json()["reason"] == "reindexing tonight"
    for _ in range(2):
        resumed = admin.post(reverse("queue-resume", args=["bulk"]))
        assert resumed.status_code == 200, resumed.content
        assert resumed.json()["paused"] is False and resumed.json()["paused_by"] is None

    # then every call is one audit entry, naming the key
    entries = list(AuditEntry.objects.order_by("id").values_list(
        "actor_kind", "action", "target_type", "target"))
    assert entries == [("api_key", "pause", "queue", "bulk")] * 2 + [
        ("api_key", "resume", "queue", "bulk")] * 2


def test_an_unknown_queue_is_a_json_404_and_changes_nothing(admin):
    for response in (admin.get(reverse("queue-detail", args=["nope"])),
                     admin.post(reverse("queue-pause", args=["nope"]), {"reason": "x"},
                                format="json"),
                     admin.post(reverse("queue-resume", args=["nope"])),
                     admin.get("/api/v1/queues/Not%20A%20Queue")):
        assert_error(response, 404, "not_found")
    assert not QueuePause.objects.exists()


def test_a_bad_reason_is_422_and_pauses_nothing(admin):
    for body in ({"reason": 12}, {"reason": "x" * 501}):
        error = assert_error(admin.post(reverse("queue-pause", args=["cache"]), body,
                                        format="json"), 422, "validation_failed")
        assert "reason" in error["details"]
    assert not QueuePause.objects.exists()


def test_only_the_admin_scope_may_read_or_steer_queues(make_client, client):
    jobs_writer = make_client([Scopes.JOBS_READ, Scopes.JOBS_WRITE])
    for response in (jobs_writer.get(reverse("queue-list")),
                     jobs_writer.get(reverse("queue-detail", args=["cache"])),
                     jobs_writer.post(reverse("queue-pause", args=["cache"])),
                     jobs_writer.post(reverse("queue-resume", args=["cache"]))):
        assert_error(response, 403)
    assert_error(client.get(reverse("queue-list")), 401)
    assert not QueuePause.objects.exists()


def test_with_the_broker_down_the_list_says_depth_unknown_and_pause_still_works(admin):
    with broker_at(UNREACHABLE_BROKER):
        listed = admin.get(reverse("queue-list"))
        paused = admin.post(reverse("queue-pause", args=["cache"]))

    assert listed.status_code == 200, listed.content
    assert {q["depth"] for q in listed.json()} == {None}
    # the pause needs only the database (the broadcast to the workers is best effort: they
    # read the row within seconds)
    assert paused.status_code == 200, paused.content
    assert paused.json()["paused"] is True and paused.json()["depth"] is None


def test_with_the_presence_unreadable_the_consumers_are_unknown(admin, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    project_redis._client = None
    try:
        body = admin.get(reverse("queue-list")).json()
    finally:
        project_redis._client = None
    assert {q["consumers"] is None for q in body} == {True}
    assert {q["waiting"] for q in body} == {0}


def test_waiting_counts_retries_due_and_not_finished_jobs(admin):
    now = timezone.now()
    # a retry due 30 s ago has waited 30 s, whenever it was created
    JobFactory(kind="noop", status=JobStatus.RETRYING, created_at=now - timedelta(hours=2),
               next_retry_at=now - timedelta(seconds=30))
    JobFactory(kind="noop", status=JobStatus.RETRYING, next_retry_at=now + timedelta(hours=1))
    JobFactory(kind="noop", status=JobStatus.RUNNING)
    JobFactory(kind="noop", status=JobStatus.DEAD)

    events = admin.get(reverse("queue-detail", args=["events"])).json()

    assert events["waiting"] == 1
    assert 29 <= events["oldest_age_seconds"] <= 90

"""The jobs API: trigger a job, read it, list and filter jobs, read its attempts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from domain.jobs.apis import openapi_schema
from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tests.conftest import assert_error, queued_messages
from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db

JOB_FIELDS = {
    "id", "kind", "status", "attempts", "max_attempts", "progress", "result", "error",
    "event", "created_at", "started_at", "finished_at", "next_retry_at",
}


def cache_task_ids(broker) -> list[str]:
    return [m["headers"]["id"] for m in queued_messages(broker, "cache")]


# --- POST /api/v1/jobs ------------------------------------------------------------------

def test_create_cache_invalidation_job_is_accepted_and_enqueued_after_commit(
        client_all, broker, django_capture_on_commit_callbacks):
    # given a client allowed to write jobs
    url = reverse("job-list")

    # when it triggers a cache invalidation job (and the request's transaction commits)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_all.post(url, {"kind": "cache_invalidation",
                                         "params": {"keys": ["a"]}}, format="json")

    # then the job is accepted with every documented field
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) >= JOB_FIELDS
    assert body["kind"] == "cache_invalidation"
    assert body["status"] == "queued"
    assert body["attempts"] == 0
    assert body["max_attempts"] >= 1
    assert body["progress"] == {"done": 0, "total": None}
    assert body["result"] is None and body["error"] is None and body["event"] is None
    assert body["params"] == {"keys": ["a"]}
    assert body["started_at"] is None and body["finished_at"] is None
    assert body["next_retry_at"] is None
    assert body["created_at"]
    assert body["url"].endswith(reverse("job-detail", args=[body["id"]]))

    # and the row exists, owned by the caller's key, and was handed to the broker
    job = Job.objects.get(pk=body["id"])
    assert job.kind == "cache_invalidation"
    assert job.params == {"keys": ["a"]}
    assert job.api_key_id == client_all.api_key.pk
    assert job.status == JobStatus.QUEUED
    assert job.enqueued_at is not None
    assert len(callbacks) == 1

    # and exactly one message for it waits in the "cache" queue
    messages = queued_messages(broker, "cache")
    assert [m["headers"]["id"] for m in messages] == [body["id"]]
    assert messages[0]["headers"]["task"] == "conveyor.cache.invalidate"


def test_nothing_is_sent_before_commit(client_all, broker, django_capture_on_commit_callbacks):
    # given a request whose transaction never commits (the on-commit hook is captured only)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_all.post(reverse("job-list"), {
            "kind": "cache_invalidation", "params": {"keys": ["a"]}}, format="json")

    # then the job row exists but nothing reached the broker yet
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    assert cache_task_ids(broker) == []
    assert Job.objects.get(pk=response.json()["id"]).enqueued_at is None


def test_create_job_with_namespaces_is_accepted(client_all, broker,
                                                django_capture_on_commit_callbacks):
    # given params naming only namespaces
    params = {"namespaces": ["catalog:products", "catalog:products:category:coffee"]}

    # when the job is triggered
    with django_capture_on_commit_callbacks(execute=True):
        response = client_all.post(reverse("job-list"), {
            "kind": "cache_invalidation", "params": params}, format="json")

    # then it is accepted, stored and enqueued
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.params == params
    assert cache_task_ids(broker) == [str(job.pk)]


def test_unknown_kind_is_422(client_all, broker, django_capture_on_commit_callbacks):
    # when a client triggers a kind nobody registered
    with django_capture_on_commit_callbacks(execute=True):
        response = client_all.post(reverse("job-list"), {
            "kind": "no_such_kind", "params": {}}, format="json")

    # then it is refused with the known kinds listed, and nothing is stored or sent
    error = assert_error(response, 422, "unknown_job_kind")
    assert error["details"]["kind"] == "no_such_kind"
    assert "cache_invalidation" in error["details"]["known"]
    assert Job.objects.count() == 0
    assert cache_task_ids(broker) == []


@pytest.mark.parametrize("params", [
    pytest.param({}, id="empty-object"),
    pytest.param({"keys": "a"}, id="keys-not-a-list"),
    pytest.param({"keys": ["a"], "extra": 1}, id="extra-property"),
    pytest.param({"keys": []}, id="empty-keys"),
    pytest.param({"keys": [""]}, id="empty-key"),
    pytest.param(["a"], id="params-not-an-object"),
])
def test_params_failing_the_schema_are_422(client_all, broker, params,
                                            django_capture_on_commit_callbacks):
    # when the params do not match the kind's JSON schema
    with django_capture_on_commit_callbacks(execute=True):
        response = client_all.post(reverse("job-list"), {
            "kind": "cache_invalidation", "params": params}, format="json")

    # then the schema errors are reported, and nothing is stored or sent
    error = assert_error(response, 422, "invalid_params")
    errors = error["details"]["params"]
    assert isinstance(errors, list) and errors
    assert all(set(e) == {"path", "message"} for e in errors)
    assert Job.objects.count() == 0
    assert cache_task_ids(broker) == []


def test_extra_property_error_names_it(client_all):
    # when params carry a property the schema does not allow
    response = client_all.post(reverse("job-list"), {
        "kind": "cache_invalidation", "params": {"keys": ["a"], "extra": 1}}, format="json")

    # then the error says which one
    error = assert_error(response, 422, "invalid_params")
    assert any("extra" in e["message"] for e in error["details"]["params"])
    assert Job.objects.count() == 0


def test_missing_kind_is_422(client_all):
    # when the body has no kind
    response = client_all.post(reverse("job-list"), {"params": {"keys": ["a"]}}, format="json")

    # then the field error is under details.kind
    error = assert_error(response, 422, "validation_failed")
    assert "kind" in error["details"]
    assert Job.objects.count() == 0


def test_run_at_in_the_future_is_stored_but_not_sent(client_all, broker,
                                                      django_capture_on_commit_callbacks):
    # given a run_at an hour from now
    run_at = timezone.now() + timedelta(hours=1)

    # when the job is triggered and the transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        response = client_all.post(reverse("job-list"), {
            "kind": "cache_invalidation", "params": {"keys": ["a"]},
            "run_at": run_at.isoformat()}, format="json")

    # then the job exists with its run_at, but no message was published yet
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["run_at"] is not None
    job = Job.objects.get(pk=body["id"])
    assert job.status == JobStatus.QUEUED
    assert abs((job.run_at - run_at).total_seconds()) < 1
    assert job.enqueued_at is None
    assert cache_task_ids(broker) == []


# --- GET /api/v1/jobs/{id} ----------------------------------------------------------------

def test_get_job(client_all):
    # given a job owned by the client's key
    job = JobFactory(api_key=client_all.api_key, kind="noop", params={"x": 1},
                     progress_done=3, progress_total=10)

    # when it is read
    response = client_all.get(reverse("job-detail", args=[job.pk]))

    # then it comes back as stored
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= JOB_FIELDS
    assert body["id"] == str(job.pk)
    assert body["kind"] == "noop"
    assert body["params"] == {"x": 1}
    assert body["progress"] == {"done": 3, "total": 10}
    assert body["status"] == "queued"


def test_get_unknown_job_is_404(client_all):
    # when a job id that does not exist is read
    response = client_all.get(reverse("job-detail", args=[uuid.uuid4()]))

    # then it is a JSON 404
    assert_error(response, 404, "not_found")


def test_get_someone_elses_job_is_404(client_all):
    # given a job created by another key (or by no key)
    job = JobFactory(api_key=None)

    # when this client reads it
    response = client_all.get(reverse("job-detail", args=[job.pk]))

    # then it does not exist for this client (ids must not leak)
    assert_error(response, 404, "not_found")
    assert Job.objects.filter(pk=job.pk).exists()


# --- GET /api/v1/jobs ---------------------------------------------------------------------

def _ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {j["id"] for j in response.json()["results"]}


def test_list_filters_by_status(client_all):
    # given jobs in different states
    key = client_all.api_key
    queued = JobFactory(api_key=key, status=JobStatus.QUEUED)
    dead = JobFactory(api_key=key, status=JobStatus.DEAD)
    succeeded = JobFactory(api_key=key, status=JobStatus.SUCCEEDED)

    # when listing with and without a status filter
    url = reverse("job-list")
    everything = _ids(client_all.get(url))
    only_dead = _ids(client_all.get(url, {"status": "dead"}))

    # then the filter narrows to the matching ones
    assert everything == {str(queued.pk), str(dead.pk), str(succeeded.pk)}
    assert only_dead == {str(dead.pk)}


def test_list_filters_by_kind(client_all):
    # given jobs of two kinds
    key = client_all.api_key
    noop = JobFactory(api_key=key, kind="noop")
    inval = JobFactory(api_key=key, kind="cache_invalidation", params={"keys": ["a"]})

    # when filtering by kind
    url = reverse("job-list")
    only_inval = _ids(client_all.get(url, {"kind": "cache_invalidation"}))
    only_noop = _ids(client_all.get(url, {"kind": "noop"}))
    none = _ids(client_all.get(url, {"kind": "nothing_like_it"}))

    # then each filter returns just its kind
    assert only_inval == {str(inval.pk)}
    assert only_noop == {str(noop.pk)}
    assert none == set()


def test_list_filters_by_event(client_all):
    # given jobs of two events and a job without one
    key = client_all.api_key
    event_a = EventFactory(api_key=key)
    event_b = EventFactory(api_key=key)
    a1 = JobFactory(api_key=key, event=event_a, handler="h1")
    a2 = JobFactory(api_key=key, event=event_a, handler="h2")
    JobFactory(api_key=key, event=event_b, handler="h1")
    JobFactory(api_key=key)

    # when filtering by event
    response = client_all.get(reverse("job-list"), {"event": str(event_a.pk)})

    # then only that event's jobs are listed, each pointing at it
    assert _ids(response) == {str(a1.pk), str(a2.pk)}
    assert {j["event"] for j in response.json()["results"]} == {str(event_a.pk)}


def test_list_shows_only_the_keys_own_jobs_unless_admin(client_all, make_client):
    # given one job of this key and one of another key
    mine = JobFactory(api_key=client_all.api_key)
    other_client = make_client(["jobs:read"], name="other")
    theirs = JobFactory(api_key=other_client.api_key)
    admin = make_client(["admin"], name="admin")

    # when each lists jobs
    url = reverse("job-list")

    # then a plain key sees its own, an admin key sees all
    assert _ids(client_all.get(url)) == {str(mine.pk)}
    assert _ids(other_client.get(url)) == {str(theirs.pk)}
    assert _ids(admin.get(url)) == {str(mine.pk), str(theirs.pk)}


def test_list_invalid_status_is_422(client_all):
    # when the status filter is not a job status
    response = client_all.get(reverse("job-list"), {"status": "exploded"})

    # then the filter error is under details.status
    error = assert_error(response, 422, "validation_failed")
    assert "status" in error["details"]


def test_list_event_not_a_uuid_is_422(client_all):
    # when the event filter is not a UUID
    response = client_all.get(reverse("job-list"), {"event": "not-a-uuid"})

    # then the filter error is under details.event
    error = assert_error(response, 422, "validation_failed")
    assert "event" in error["details"]


@pytest.mark.parametrize("name", ["status", "kind", "event", "limit"])
def test_list_with_an_empty_filter_is_422_not_every_job(client_all, name):
    # given jobs in two statuses
    JobFactory(api_key=client_all.api_key, status=JobStatus.DEAD)
    JobFactory(api_key=client_all.api_key, status=JobStatus.SUCCEEDED)

    # when a filter is given empty (before: read as not given, every job listed)
    response = client_all.get(f"{reverse('job-list')}?{name}=")

    # then it is 422, the error under that filter's name
    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == [name]


def test_names_are_taken_as_sent(client_all):
    # when a kind filter is only spaces, or a kind to run is padded (before: trimmed, so the
    # schema's enum and lengths spoke of other strings than the server's)
    blank = client_all.get(f"{reverse('job-list')}?kind=%20")
    padded = client_all.post(reverse("job-list"), {"kind": " noop"}, format="json")

    # then the first is 422 under details.kind, the second names no job kind
    assert "kind" in assert_error(blank, 422, "validation_failed")["details"]
    assert_error(padded, 422, "unknown_job_kind")


def test_list_cursor_pagination_visits_every_job_once_newest_first(client_all):
    # given 7 jobs created a second apart (and one of another key that must not appear)
    now = timezone.now()
    jobs = [JobFactory(api_key=client_all.api_key, created_at=now - timedelta(seconds=i))
            for i in range(7)]
    JobFactory(api_key=None, created_at=now)
    expected = [str(j.pk) for j in sorted(jobs, key=lambda j: j.created_at, reverse=True)]

    # when following `next` links with limit=3
    seen: list[str] = []
    pages = 0
    response = client_all.get(reverse("job-list"), {"limit": 3})
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        assert len(body["results"]) <= 3
        seen += [j["id"] for j in body["results"]]
        pages += 1
        if not body["next"]:
            break
        assert pages < 10, "pagination does not end"
        response = client_all.get(body["next"])

    # then all 7 came back exactly once, newest first, in 3 pages
    assert seen == expected
    assert pages == 3


# --- GET /api/v1/jobs/{id}/attempts -------------------------------------------------------

def test_attempts_are_listed_in_number_order(client_all):
    # given a job with three attempts stored out of order
    job = JobFactory(api_key=client_all.api_key, status=JobStatus.DEAD, attempts=3)
    start = timezone.now() - timedelta(minutes=5)
    for number, outcome in ((3, AttemptOutcome.FAILED), (1, AttemptOutcome.RETRY),
                            (2, AttemptOutcome.RETRY)):
        JobAttempt.objects.create(
            job=job, number=number, outcome=outcome,
            started_at=start + timedelta(seconds=number),
            finished_at=start + timedelta(seconds=number, milliseconds=500),
            error_type="TimeoutError", error_message=f"boom {number}", worker="w1",
        )

    # when the attempts are read
    response = client_all.get(reverse("job-attempts", args=[job.pk]))

    # then they come back in number order with their fields
    assert response.status_code == 200, response.content
    body = response.json()
    assert [a["number"] for a in body] == [1, 2, 3]
    assert [a["outcome"] for a in body] == ["retry", "retry", "failed"]
    assert [a["error_message"] for a in body] == ["boom 1", "boom 2", "boom 3"]
    assert set(body[0]) == {"run", "number", "started_at", "finished_at", "outcome", "error_type",
                            "error_message", "traceback", "worker"}
    assert JobAttempt.objects.filter(job=job).count() == 3


def test_attempts_after_a_replay_are_listed_run_by_run(client_all):
    # given a job that failed twice, was replayed, and failed twice again: attempt numbers
    # restart with each run, and the rows were stored in no particular order
    job = JobFactory(api_key=client_all.api_key, status=JobStatus.DEAD, attempts=2, replays=1)
    start = timezone.now() - timedelta(minutes=5)
    for run, number in ((1, 2), (0, 1), (1, 1), (0, 2)):
        at = start + timedelta(minutes=run, seconds=number)
        JobAttempt.objects.create(job=job, run=run, number=number, outcome=AttemptOutcome.RETRY,
                                  started_at=at, finished_at=at, error_message=f"{run}.{number}")

    # when the attempts are read
    response = client_all.get(reverse("job-attempts", args=[job.pk]))

    # then the first run's attempts come first, each run in attempt order (not 1, 1, 2, 2)
    assert response.status_code == 200, response.content
    assert [(a["run"], a["number"]) for a in response.json()] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert [a["error_message"] for a in response.json()] == ["0.1", "0.2", "1.1", "1.2"]


def test_attempts_of_a_job_without_attempts_is_empty(client_all):
    # given a job that never ran
    job = JobFactory(api_key=client_all.api_key)

    # when its attempts are read
    response = client_all.get(reverse("job-attempts", args=[job.pk]))

    # then the list is empty
    assert response.status_code == 200, response.content
    assert response.json() == []


def test_attempts_of_unknown_job_is_404(client_all):
    # when the job does not exist
    response = client_all.get(reverse("job-attempts", args=[uuid.uuid4()]))

    # then it is a JSON 404
    assert_error(response, 404, "not_found")


# --- The schema of the registries' JSON Schemas ----------------------------------------------

@pytest.mark.parametrize(("draft", "openapi"), [
    ({"type": ["string", "null"], "maxLength": 64}, {"type": "string", "maxLength": 64,
                                                     "nullable": True}),
    ({"type": ["string", "integer"]}, {"anyOf": [{"type": "string"}, {"type": "integer"}]}),
    ({"const": "x"}, {"enum": ["x"]}),
    ({"type": "object", "properties": {"type": {"type": ["integer", "null"]}},
      "items": {"type": ["null", "string"]}, "anyOf": [{"properties": {"a": {"const": 1}}}]},
     {"type": "object", "properties": {"type": {"type": "integer", "nullable": True}},
      "items": {"type": "string", "nullable": True},
      "anyOf": [{"properties": {"a": {"enum": [1]}}}]}),
    ({"type": "object", "required": ["type"]}, {"type": "object", "required": ["type"]}),
])
def test_openapi_schema_writes_draft_2020_12_in_the_openapi_3_0_dialect(draft, openapi):
    # when a registry's schema is written into /api/schema (OpenAPI 3.0), then type lists and
    # const become what 3.0 has, at every depth, and a property named "type" is a name
    assert openapi_schema(draft) == openapi

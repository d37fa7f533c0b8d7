"""A run whose job ended without it (dead after its worker vanished on every attempt, or
cancelled through /api/v1/jobs) ends too, and stops holding its rows."""

from __future__ import annotations

import pytest
from django.urls import reverse

from domain.bulk.models import BulkRun, BulkRunStatus
from domain.bulk.services import (
    bulk_run_pause,
    bulk_run_resume,
    bulk_run_settle,
    bulk_run_start,
)
from domain.jobs.models import Job, JobStatus
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db
REPRICE = {"operation": "catalog.reprice", "args": {"category": "tea", "percent": 10}}


def _running_run_whose_job_died(api_key=None) -> BulkRun:
    ProductFactory(category="tea")
    run = bulk_run_start(**REPRICE, api_key=api_key)
    BulkRun.objects.filter(pk=run.pk).update(status=BulkRunStatus.RUNNING)
    Job.objects.filter(pk=run.job_id).update(
        status=JobStatus.DEAD, error={"type": "WorkerLost",
                                      "message": "the worker vanished while running the job"})
    return run


def test_reading_it_shows_it_failed_with_the_jobs_error(make_client):
    client = make_client(["bulk:read"])
    run = _running_run_whose_job_died(client.api_key)
    body = client.get(reverse("bulk-run-detail", args=[run.pk])).json()
    assert body["status"] == "failed" and body["finished_at"]
    assert body["last_error"]["code"] == "WorkerLost"
    assert "worker vanished" in body["last_error"]["message"]


def test_a_new_run_on_its_rows_is_accepted_and_it_can_be_resumed():
    # given a run whose job died while it held the product table
    stuck = _running_run_whose_job_died()

    # when another run on the same rows starts, it is accepted (the dead one held nothing)
    other = bulk_run_start(**{**REPRICE, "args": {"category": "tea", "percent": 1}})
    stuck.refresh_from_db()
    assert stuck.status == BulkRunStatus.FAILED and other.status == BulkRunStatus.QUEUED

    # and once that one is done, the failed run resumes from its checkpoint with a new job
    BulkRun.objects.filter(pk=other.pk).update(status=BulkRunStatus.SUCCEEDED)
    resumed = bulk_run_resume(run=stuck)
    assert resumed.status == BulkRunStatus.QUEUED and resumed.job_id != stuck.job_id


def test_a_job_cancelled_through_the_jobs_api_cancels_its_queued_run(make_client):
    ProductFactory(category="tea")
    client = make_client(["jobs:write", "bulk:read"])
    run = bulk_run_start(**REPRICE, api_key=client.api_key)
    assert client.post(reverse("job-cancel", args=[run.job_id])).status_code == 200
    body = client.get(reverse("bulk-run-detail", args=[run.pk])).json()
    assert body["status"] == "cancelled"


def test_a_cancel_on_its_way_when_the_job_died_ends_the_run_cancelled():
    run = _running_run_whose_job_died()
    BulkRun.objects.filter(pk=run.pk).update(requested="cancel")
    run.refresh_from_db()
    assert bulk_run_settle(run=run).status == BulkRunStatus.CANCELLED


@pytest.mark.parametrize("job_status", [JobStatus.RETRYING, JobStatus.QUEUED])
def test_a_running_run_whose_job_waits_is_paused_at_once(job_status):
    # given a running run whose job is waiting (to retry, or handed back between slices)
    ProductFactory(category="tea")
    run = bulk_run_start(**REPRICE)
    BulkRun.objects.filter(pk=run.pk).update(status=BulkRunStatus.RUNNING)
    Job.objects.filter(pk=run.job_id).update(status=job_status)

    # when it is paused, it is paused now (its job cancelled: no chunk can start)
    paused = bulk_run_pause(run=run)
    assert (paused.status, paused.requested) == (BulkRunStatus.PAUSED, "")
    assert Job.objects.get(pk=run.job_id).status == JobStatus.CANCELLED


def test_the_list_settles_the_runs_it_shows(make_client):
    client = make_client(["bulk:read"])
    run = _running_run_whose_job_died(client.api_key)
    [listed] = client.get(reverse("bulk-run-list")).json()["results"]
    assert listed["id"] == str(run.pk) and listed["status"] == "failed"

"""Why isn't this job running? — the reasons that need real worker processes: a worker killed
with SIGKILL in the middle of a job (`orphaned`), then the job rescued into a queue nobody
consumes any more.

The workers are `celery -A config worker` subprocesses on the suite's own Redis
(tests/faults/conftest.py); the question is asked through the API, in this process.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from domain.access.models import Scopes
from domain.jobs.models import Job, JobStatus
from domain.jobs.rescue import jobs_rescue_orphans
from domain.jobs.services import job_create
from tests.conftest import wait_for
from tests.faults.jobs import EFFECT_KIND

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

LEASE_SECONDS = 3  # the workers' JOB_LEASE_SECONDS: their leases lapse soon after they die


def _explain(client, job_id) -> dict:
    response = client.get(reverse("job-explain", args=[job_id]))
    assert response.status_code == 200, response.content
    return response.json()


def test_a_job_whose_worker_was_killed_is_orphaned(workers, make_client, settings):
    settings.JOB_LEASE_SECONDS = LEASE_SECONDS
    admin = make_client([Scopes.JOBS_READ, Scopes.ADMIN], name="ops")
    # given a worker running a long job
    worker = workers.start(concurrency=1, env={"JOB_LEASE_SECONDS": str(LEASE_SECONDS)})
    job = job_create(kind=EFFECT_KIND, params={"sleep": 30})
    wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists(),
             timeout=60, message="the job to start on the worker")
    body = _explain(admin, job.pk)
    assert (body["reason"], body["details"]["worker"]) == ("running", worker.name)

    # when the worker is killed with SIGKILL mid-job (nothing tells the database)
    worker.kill9()
    killed_at = timezone.now()
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING

    # then, once its lease has lapsed, the job is orphaned: on which worker, last seen when,
    # and when the rescue takes it back
    wait_for(lambda: Job.objects.get(pk=job.pk).lease_expires_at < timezone.now(),
             timeout=30, message="the dead worker's lease to lapse")
    body = _explain(admin, job.pk)
    assert (body["status"], body["reason"]) == ("running", "orphaned"), body
    details = body["details"]
    assert details["worker"] == worker.name
    last_seen = datetime.fromisoformat(details["last_seen_at"])
    assert last_seen <= killed_at
    assert datetime.fromisoformat(details["rescue_at"]) > last_seen
    assert f"left running on {worker.name}" in body["message"]
    assert "the orphan rescue runs it again" in body["message"]

    # when the rescue takes it back, nothing consumes its queue any more
    time.sleep(settings.ORPHAN_GRACE_SECONDS)
    wait_for(lambda: jobs_rescue_orphans(judge_now=True)["requeued"] == 1, timeout=30,
             message="the rescue to requeue the job")
    body = _explain(admin, job.pk)
    assert body["status"] == "queued"
    assert body["reason"] in ("not_sent", "waiting_in_queue"), body

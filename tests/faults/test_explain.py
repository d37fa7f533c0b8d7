"""Why isn't this job running? — the reasons that need real worker processes: a worker killed
with SIGKILL in the middle of a job (`orphaned`), its job rescued into a queue no live worker
consumes any more (`no_consumer`), and jobs behind a busy worker (`waiting_in_queue`), also
with Redis (broker and presence) down.

The workers are `celery -A config worker` subprocesses on the suite's own Redis
(tests/faults/conftest.py), where they also write their presence; the question is asked over
HTTP of a gunicorn serving the API on that same Redis and the test database, as in production:
the API process is not a worker (this process may hold the session's in-process worker, which
would count as a consumer of every queue).
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime

import pytest
from django.utils import timezone

from domain.access.models import Scopes
from domain.access.services import api_key_create
from domain.jobs.models import Job, JobStatus
from domain.jobs.rescue import jobs_rescue_orphans
from domain.jobs.services import job_create
from tests.conftest import wait_for
from tests.faults.jobs import EFFECT_KIND
from tests.faults.procs import EFFECTS_DB, running_gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

LEASE_SECONDS = 3  # the workers' JOB_LEASE_SECONDS: a dead worker's lease lapses soon
# The workers write their presence every second; the API takes one unseen for 3 s as gone.
WORKER_ENV = {"JOB_LEASE_SECONDS": str(LEASE_SECONDS), "WORKER_HEARTBEAT_SECONDS": "1"}
SEEN_SECONDS = 3


@pytest.fixture
def api(tmp_path, spare_redis):
    """The API in a process of its own, on the workers' Redis; and an admin key for it."""
    _key, raw = api_key_create(name="ops", scopes=[Scopes.JOBS_READ, Scopes.ADMIN])
    with running_gunicorn(tmp_path, app="tests.faults.wsgi:application",
                          TEST_BROKER_URL=spare_redis.broker_url,
                          REDIS_URL=spare_redis.url(EFFECTS_DB),
                          WORKER_SEEN_SECONDS=str(SEEN_SECONDS),
                          JOB_LEASE_SECONDS=str(LEASE_SECONDS)) as server:

        def explain(job_id) -> dict:
            request = urllib.request.Request(
                f"http://127.0.0.1:{server.port}/api/v1/jobs/{job_id}/explain",
                headers={"Authorization": f"Bearer {raw}"})
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                assert response.status == 200
                return json.loads(response.read())

        explain.server = server
        yield explain


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_job_whose_worker_was_killed_is_orphaned_then_has_no_consumer(workers, api,
                                                                         settings):
    settings.JOB_LEASE_SECONDS = LEASE_SECONDS
    # given a worker running a long job
    worker = workers.start(concurrency=1, env=WORKER_ENV)
    job = job_create(kind=EFFECT_KIND, params={"sleep": 30})
    wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists(),
             timeout=60, message="the job to start on the worker")
    body = api(job.pk)
    assert (body["reason"], body["details"]["worker"]) == ("running", worker.name), body

    # when the worker is killed with SIGKILL mid-job (nothing tells the database)
    worker.kill9()
    killed_at = timezone.now()
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING

    # then, once its lease has lapsed, the job is orphaned: on which worker, last seen when,
    # and when the rescue takes it back
    wait_for(lambda: Job.objects.get(pk=job.pk).lease_expires_at < timezone.now(),
             timeout=30, message="the dead worker's lease to lapse")
    body = api(job.pk)
    assert (body["status"], body["reason"]) == ("running", "orphaned"), body
    details = body["details"]
    assert details["worker"] == worker.name
    assert _at(details["last_seen_at"]) <= killed_at
    assert _at(details["rescue_at"]) > _at(details["last_seen_at"])
    assert f"left running on {worker.name}" in body["message"]
    assert "the orphan rescue runs it again" in body["message"]

    # when the rescue takes it back (as Beat's would), it is on the broker again, and no live
    # worker consumes its queue
    time.sleep(settings.ORPHAN_GRACE_SECONDS)
    wait_for(lambda: jobs_rescue_orphans(judge_now=True)["requeued"] == 1, timeout=30,
             message="the rescue to requeue the job")
    body = api(job.pk)
    assert (body["status"], body["reason"]) == ("queued", "no_consumer"), body
    assert body["details"]["consumers"] == [] and body["details"]["depth"] == 1
    assert "No live worker consumes its queue 'events'" in body["message"]

    # when a worker of that queue starts, it takes the job, which runs again and succeeds
    workers.start(concurrency=1, env=WORKER_ENV)
    wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists(),
             timeout=60, message="the job to run again")
    assert api(job.pk)["reason"] == "running"


def test_jobs_behind_a_busy_worker_are_waiting_in_queue(workers, api, spare_redis):
    # given a worker with one process, busy with a long job
    worker = workers.start(concurrency=1, env=WORKER_ENV)
    busy = job_create(kind=EFFECT_KIND, params={"sleep": 20})
    wait_for(lambda: Job.objects.filter(pk=busy.pk, status=JobStatus.RUNNING).exists(),
             timeout=60, message="the long job to start")

    # when three more jobs are sent to its queue
    jobs = [job_create(kind=EFFECT_KIND, params={}) for _ in range(3)]

    # then the last waits in the queue behind the two sent before it, with the worker seen
    # consuming the queue
    body = api(jobs[-1].pk)
    assert (body["status"], body["reason"]) == ("queued", "waiting_in_queue"), body
    details = body["details"]
    assert details["consumers"] == [worker.name]
    assert (details["ahead"], details["position"]) == (2, 3)
    # (the worker may hold one of them, prefetched: it is ahead, but not in the queue)
    assert details["depth"] in (2, 3)
    assert details["oldest_age_seconds"] >= details["waiting_seconds"]
    assert "behind 2 jobs sent before it" in body["message"]

    # when Redis (the broker and the workers' presence) stops, the API still answers, from
    # the database: depth and consumers unknown, so not "no consumer"
    spare_redis.stop(kill=True)
    body = api(jobs[-1].pk)
    assert body["reason"] == "waiting_in_queue", body
    assert (body["details"]["depth"], body["details"]["consumers"], body["details"]["ahead"]) == (
        None, None, 2)
    assert "the broker does not answer" in body["message"]

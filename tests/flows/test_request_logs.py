"""One request's logs end to end: the API's JSON line and a real worker's JSON log, joined by
the request's correlation id.

The API runs in this process (Django's test client) with the project's JSON formatter and
filters on the root logger; the worker is a `celery worker` subprocess (prefork) with
LOG_FORMAT=json writing to a file, on a Redis of the test's own. Three requests, each with its
own X-Correlation-ID: a publish (one job), a job that fails once and retries, and a batch
publish (its jobs travel in one micro-batch message). Every line of the worker's log must be
JSON, and every line that names one of a request's jobs must carry that request's id.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections import Counter
from pathlib import Path

import pytest
from django.urls import reverse

import tests.faults.jobs  # noqa: F401 - the test-only job kinds, here and in the worker
from config.celery import app
from domain.common.logging import CorrelationIdFilter, JsonFormatter, RedactSecretsFilter
from domain.jobs.models import Job, JobStatus
from tests.broker_utils import broker_at
from tests.conftest import wait_for
from tests.faults.jobs import BACKOFF_KIND
from tests.faults.procs import RedisServer, WorkerFactory, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

PING = {"type": "demo.ping", "payload": {"message": "hi"}}
RECEIVED = re.compile(r"^Task \S+\[(?P<id>[^\]]+)\] received$")
# Celery's last line for a message in the process that ran it.
ENDED = re.compile(r"^Task \S+\[(?P<id>[^\]]+)\] (succeeded in|retry:|raised|ignored|rejected)")


@pytest.fixture
def worker_log(tmp_path) -> Path:
    """A JSON-logging worker on a Redis of the test's own; its log file."""
    redis_server = RedisServer(free_port(), tmp_path / "redis")
    redis_server.start()
    factory = WorkerFactory(app=app, redis_server=redis_server, log_dir=tmp_path / "workers")
    try:
        with broker_at(redis_server.broker_url):
            worker = factory.start(concurrency=2, env={"LOG_FORMAT": "json"})
            yield worker.log_path
            print(worker.log_path.read_text(encoding="utf-8"))  # shown if the test fails
    finally:
        factory.cleanup()
        redis_server.stop(kill=True)


@pytest.fixture
def api_log():
    """The API's log lines (this process), written as production writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationIdFilter())
    handler.addFilter(RedactSecretsFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _complete_lines(path: Path) -> list[dict]:
    """The log's lines written so far, parsed (a last line still being written waits)."""
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def _every_message_ended(path: Path, correlation_ids: set[str]) -> list[dict] | None:
    """The log once every delivery of these requests' messages that was received has its last
    line (a retried job's message is received, and ends, once per attempt)."""
    lines = _complete_lines(path)
    received, ended = Counter(), Counter()
    for line in lines:
        if line.get("correlation_id") not in correlation_ids:
            continue
        if match := RECEIVED.match(line["message"]):
            received[match["id"]] += 1
        elif match := ENDED.match(line["message"]):
            ended[match["id"]] += 1
    seen = {line.get("correlation_id") for line in lines if RECEIVED.match(line["message"])}
    return lines if correlation_ids <= seen and received <= ended else None


def test_a_requests_correlation_id_leads_from_its_api_line_to_every_line_of_its_jobs(
        worker_log, api_log, make_client):
    client = make_client()

    # when three requests come in, each with its own correlation id
    single = client.post(reverse("event-publish"), PING, format="json",
                         HTTP_X_CORRELATION_ID="logs-single-1")
    retried = client.post(reverse("job-list"), {"kind": BACKOFF_KIND,
                                                "params": {"fail_times": 1}}, format="json",
                          HTTP_X_CORRELATION_ID="logs-retry-1")
    batch = client.post(reverse("event-batch-publish"), {"events": [PING, PING, PING]},
                        format="json", HTTP_X_CORRELATION_ID="logs-batch-1")
    assert (single.status_code, retried.status_code, batch.status_code) == (202, 202, 202)
    requests = {cid: list(Job.objects.filter(correlation_id=cid).values_list("pk", flat=True))
                for cid in ("logs-single-1", "logs-retry-1", "logs-batch-1")}
    assert [len(jobs) for jobs in requests.values()] == [1, 1, 3]
    every_job = [job for jobs in requests.values() for job in jobs]
    wait_for(lambda: Job.objects.filter(pk__in=every_job,
                                        status=JobStatus.SUCCEEDED).count() == len(every_job),
             timeout=60, message="every job to succeed")
    worker_lines = wait_for(lambda: _every_message_ended(worker_log, set(requests)),
                            timeout=60, message="the worker's last line of every message")

    # then every line the worker wrote is JSON (_complete_lines parsed each), with the basics
    raw = worker_log.read_text(encoding="utf-8")
    assert raw.endswith("\n") and len(raw.split("\n")[:-1]) == len(worker_lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in worker_lines)
    # the API wrote one line per request, JSON too, with its correlation id
    api_lines = [json.loads(line) for line in api_log.getvalue().splitlines()]
    by_request = {cid: [line for line in api_lines if line.get("correlation_id") == cid]
                  for cid in requests}
    [published] = by_request["logs-single-1"]
    event_id = single.json()["id"]
    assert published["message"].startswith(f"event published event_id={event_id} ")
    assert published["event_id"] == event_id
    assert str(requests["logs-single-1"][0]) in published["message"]
    [created] = by_request["logs-retry-1"]
    assert created["job_id"] == str(requests["logs-retry-1"][0])
    [batched] = by_request["logs-batch-1"]
    assert batched["message"].startswith("events published count=3 jobs=3")

    # and from there the id leads through the worker's log: every line naming a job of a
    # request carries that request's id, whatever wrote it (the main process's "received",
    # the job's own lines, Celery's retry and success lines in the pool process)
    for cid, jobs in requests.items():
        for job_id in map(str, jobs):
            naming = [line for line in worker_lines if job_id in json.dumps(line)]
            assert {line.get("correlation_id") for line in naming} <= {cid}, (cid, naming)
        cid_lines = [line for line in worker_lines if line.get("correlation_id") == cid]
        assert any(RECEIVED.match(line["message"]) for line in cid_lines)
        assert any(line["message"].startswith("Task ") and " succeeded in " in line["message"]
                   for line in cid_lines)
        # every line of its messages knows the task, queue and worker
        assert all(line.get("task") and line.get("queue") and line.get("worker")
                   for line in cid_lines), cid_lines

    # the single publish's job: received, started, succeeded, with its job and event ids
    [single_job] = map(str, requests["logs-single-1"])
    job_lines = [line for line in worker_lines if line.get("job_id") == single_job]
    assert [line["message"].split(" job_id=")[0] for line in job_lines
            if line["logger"] == "workers.base"] == ["job started", "job succeeded"]
    # (the event id once the job is loaded: Celery's own lines, around it, have only the job's)
    assert {line.get("event_id") for line in job_lines if line["logger"] == "workers.base"} \
        == {event_id}
    assert {line["queue"] for line in job_lines} == {"events"}
    # the retried job: its failure and Celery's retry line carry the request's id too
    [retried_job] = map(str, requests["logs-retry-1"])
    retry_lines = [line for line in worker_lines if line.get("job_id") == retried_job
                   and line["level"] == "WARNING"]
    assert any("job failed, retrying" in line["message"] for line in retry_lines)
    assert any(" retry: Retry in " in line["message"] for line in worker_lines
               if line.get("correlation_id") == "logs-retry-1")
    # the batch's jobs ran in micro-batch messages: their lines carry the batch's id
    assert any(line["message"].startswith("job batch done")
               for line in worker_lines if line.get("correlation_id") == "logs-batch-1")

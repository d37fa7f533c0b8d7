"""Infrastructure faults as API clients see them, on a real gunicorn: a Redis out of memory
(the broker and the rate limiter's counters both in it) and a PostgreSQL outage.

The contract (DESIGN.md #1, #7): a 2xx means the event and its jobs are committed; after the
commit nothing the broker does changes the answer (202 with the event `pending`, the jobs left
for the relay); infrastructure trouble is a 503 with `Retry-After` in the JSON error shape,
never a 500, so a client retries what was not stored and never duplicates what was.

Each test has its own Redis (procs.RedisServer) and, for the outage, its own PostgreSQL cluster
(the `private_postgres` fixture): the shared servers are never touched. What each test measured
is printed (`-rP`) for the README's fault matrix.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import redis
from django.db import OperationalError, connection

from domain.access.models import Scopes
from domain.access.services import api_key_create
from domain.events.models import Event, EventStatus
from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.outbox import outbox_relay
from tests.conftest import queued_job_ids
from tests.faults.procs import EFFECTS_DB, RedisServer, running_gunicorn, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

PING = {"type": "demo.ping", "payload": {"message": "fault"}}
KiB = 1024
MiB = 1024 * KiB


def _say(title: str, **numbers) -> None:
    print(f"[faults] {title}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


# --- a small HTTP client ----------------------------------------------------------------

@dataclass
class Answer:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: dict | None = None
    error: str | None = None  # what the client saw instead of an answer
    at: float = field(default_factory=time.monotonic)  # when the answer came


def request(port: int, method: str, path: str, *, key: str | None = None,
            body: dict | None = None, timeout: float = 30) -> Answer:
    """One request on a new connection (as most clients under trouble do)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        response = conn.getresponse()
        raw = response.read()
        answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()})
        try:
            answer.body = json.loads(raw)
        except ValueError:
            answer.error = f"not JSON: {raw[:200]!r}"
        return answer
    except OSError as exc:
        return Answer(error=repr(exc))
    finally:
        conn.close()


def assert_service_unavailable(answer: Answer) -> None:
    """A 503 in the one JSON error shape, with a Retry-After of a few seconds."""
    assert answer.status == 503, answer
    assert answer.headers["content-type"].startswith("application/json"), answer
    assert set(answer.body) == {"error"}, answer
    error = answer.body["error"]
    assert set(error) == {"code", "message", "details"}, answer
    assert error["code"] == "service_unavailable", answer
    assert 1 <= int(answer.headers["retry-after"]) <= 30, answer


class Loader:
    """`threads` clients publishing one event at a time, as fast as they are answered (a
    short pause between requests keeps two CPUs for the server), until stopped."""

    def __init__(self, port: int, key: str, *, threads: int = 4, pause: float = 0.01):
        self.port, self.key, self.pause = port, key, pause
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = request(self.port, "POST", "/api/v1/events", key=self.key, body=PING)
            with self._lock:
                self.answers.append(answer)
            time.sleep(self.pause)

    def start(self) -> Loader:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return self.answers

    def accepted_since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.status == 202 and a.at > moment)


# --- a Redis out of memory ------------------------------------------------------------

def fill_until_oom(client: redis.Redis, *, headroom: int = 2 * MiB) -> int:
    """Cap the server at what it holds now plus `headroom` (`noeviction`, as Celery requires),
    write 64 KiB values until Redis refuses a write with OOM, and keep it over its limit (the
    cap a little under what it holds: a full Redis whose memory comes and goes would accept
    some writes, and each publish's outcome would be left to chance); the number written."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", client.info("memory")["used_memory"] + headroom)
    blob = b"x" * (64 * KiB)
    for n in range(10_000):
        try:
            client.set(f"filler:{n}", blob)
        except redis.exceptions.OutOfMemoryError:
            client.config_set("maxmemory", client.info("memory")["used_memory"] - 256 * KiB)
            return n
    raise AssertionError("Redis never refused a write")


def free_filler(client: redis.Redis, written: int) -> None:
    client.delete(*[f"filler:{n}" for n in range(written)])


def test_a_full_redis_answers_every_publish_202_pending_and_the_relay_sends_each_job_once(
        spare_redis: RedisServer, workers, tmp_path):
    # given a gunicorn whose broker and rate-limit counters are both in our own Redis
    _api_key, key = api_key_create(name="full-redis", scopes=[Scopes.EVENTS_PUBLISH])
    # (every request counted in Redis, as API_THROTTLE_LEASE_MAX=1 does: with shares taken
    # ahead a process can serve this test's 41 publishes without asking Redis at all, and the
    # test is about what the limiter does when Redis refuses)
    with running_gunicorn(tmp_path, TEST_BROKER_URL=spare_redis.broker_url,
                          REDIS_URL=spare_redis.url(EFFECTS_DB),
                          API_THROTTLE_LEASE_MAX="1") as server:
        # and a publish before the fault, so its broker and counter connections are open
        warm = request(server.port, "POST", "/api/v1/events", key=key, body=PING)
        assert warm.status == 202, (warm, server.log())
        # (answered after its commit; the process's outbox dispatcher sends it right after)
        assert wait_until(lambda: Event.objects.get(pk=warm.body["id"]).status
                          == EventStatus.DISPATCHED, 10, 0.05), server.log()

        # when Redis fills up until it refuses writes (OOM, noeviction)
        effects = spare_redis.client(EFFECTS_DB)
        written = fill_until_oom(effects)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            spare_redis.client(14).lpush("probe", b"x")

        # and clients publish: 4 threads of 10 events, and one batch of 10
        answers: list[Answer] = []
        lock = threading.Lock()

        def publish_ten() -> None:
            for _ in range(10):
                answer = request(server.port, "POST", "/api/v1/events", key=key, body=PING)
                with lock:
                    answers.append(answer)

        threads = [threading.Thread(target=publish_ten) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        batch = request(server.port, "POST", "/api/v1/events/batch", key=key,
                        body={"events": [PING] * 10})

        # then every publish is a 202 whose event is stored and `pending`, its job not sent:
        # the dispatcher tried and failed for every job (its log lines add up to 50 unsent)
        def unsent_logged() -> int:
            return sum(int(n) for n in re.findall(
                r"outbox send failed sent=0 unsent=(\d+)",
                server.log_path.read_text(errors="replace")))

        assert wait_until(lambda: unsent_logged() >= 50, 30, 0.1), server.log()
        statuses = Counter(a.status for a in [*answers, batch])
        log = server.log_path.read_text(errors="replace")
        _say("full Redis (OOM, noeviction): publish", publishes=len(answers), batch_events=10,
             statuses=dict(statuses), filler_mib=round(written * 64 / 1024, 1),
             limiter_log_lines=log.count("rate limiter"),
             outbox_send_failures_logged=log.count("outbox send failed"))
        assert statuses == {202: len(answers) + 1}, (statuses, [a for a in answers
                                                                if a.status != 202][:3], log)
        bodies = [a.body for a in answers] + batch.body["events"]
        assert {b["status"] for b in bodies} == {EventStatus.PENDING}
        assert {j["status"] for b in bodies for j in b["jobs"]} == {JobStatus.QUEUED}
        event_ids = [b["id"] for b in bodies]
        assert Event.objects.filter(pk__in=event_ids, status=EventStatus.PENDING).count() == 50
        jobs = list(Job.objects.filter(event_id__in=event_ids))
        assert len(jobs) == 50 and all(job.enqueued_at is None for job in jobs)
        # and each failed dispatcher round is logged once: never more lines than publishes,
        # and exactly the 50 jobs as unsent
        assert 1 <= log.count("outbox send failed") <= len(answers) + 1, log
        assert unsent_logged() == 50, log
        # and the rate limiter let them through, saying so once, not once per request
        assert log.count("rate limiter unavailable") == 1, log

        # when memory is freed: the relay (Beat's, every 5 s) sends what was left behind
        free_filler(effects, written)
        freed = time.monotonic()
        sent = outbox_relay(grace_seconds=0)

        # then each job is on the broker exactly once (with the warm-up's, sent before)
        broker = spare_redis.client(14)
        on_queue = Counter(queued_job_ids(broker, "events"))
        assert sent == 50
        assert set(on_queue) == {str(job.pk) for job in jobs} | {warm.body["jobs"][0]["id"]}
        assert set(on_queue.values()) == {1}

        # and a worker (started now: a worker on a full Redis is another finding) runs each
        # job once
        started = time.monotonic()
        worker = workers.start(concurrency=2)
        worker_start = time.monotonic() - started
        total = len(jobs) + 1
        done = wait_until(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == total,
                          90, 0.2)
        terminal_after = time.monotonic() - freed
        assert done, workers.logs()

        # and the server publishes straight to the broker again, and says once that the
        # limiter counts again (after its quiet period: a Redis at its limit flaps)
        after: list[Answer] = []

        def limiter_back() -> bool:
            after.append(request(server.port, "POST", "/api/v1/events", key=key, body=PING))
            return "rate limiter available again" in server.log_path.read_text(errors="replace")

        assert wait_until(limiter_back, 30, 0.5), server.log()
        assert {a.status for a in after} == {202}, after
        after_ids = [a.body["id"] for a in after]
        assert wait_until(lambda: Event.objects.filter(
            pk__in=after_ids, status__in=(EventStatus.DISPATCHED, EventStatus.COMPLETED),
        ).count() == len(after), 10, 0.1)
        log = server.log_path.read_text(errors="replace")
        assert log.count("rate limiter unavailable") == 1
        assert log.count("rate limiter available again") == 1, log

    total += len(after)
    assert wait_until(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == total,
                      90, 0.2), workers.logs()
    succeeded = Job.objects.filter(status=JobStatus.SUCCEEDED).count()
    doubled = JobAttempt.objects.filter(outcome=AttemptOutcome.SUCCEEDED).count() - succeeded
    _say("full Redis (OOM, noeviction): recovery", relay_sent=sent,
         terminal_after_memory_freed_s=round(terminal_after, 1),
         of_which_worker_start_s=round(worker_start, 1), jobs=total, lost=total - succeeded,
         doubled=doubled, published_after=len(after))
    assert doubled == 0
    assert worker.alive()


# --- a database outage --------------------------------------------------------------------

def _with_database(query):
    """The query's result once the database answers again (a connection broken by the restart
    is dropped and the query tried on a new one)."""
    for _ in range(50):
        try:
            return query()
        except OperationalError:
            connection.close()
            time.sleep(0.2)
    raise AssertionError("the database did not answer again")


@pytest.mark.postgres
def test_a_database_outage_is_503_with_retry_after_and_no_accepted_event_is_lost(
        private_postgres, spare_redis: RedisServer, workers, beat, tmp_path):
    # given a gunicorn on our own PostgreSQL cluster (persistent, health-checked connections,
    # as in production) and our own Redis, a worker, Beat (the relay and the orphan rescue,
    # for a job caught running when the database goes), and an API key on that cluster
    _api_key, key = api_key_create(name="db-outage", scopes=[Scopes.EVENTS_PUBLISH])
    with running_gunicorn(tmp_path, DJANGO_SETTINGS_MODULE="tests.faults.settings_persistent_db",
                          TEST_BROKER_URL=spare_redis.broker_url,
                          REDIS_URL=spare_redis.url(EFFECTS_DB)) as server:
        worker = workers.start(concurrency=2)
        # and clients publishing all along
        loader = Loader(server.port, key).start()
        assert wait_until(lambda: loader.accepted_since(0) >= 20, 60), server.log()

        # when PostgreSQL stops for 10 seconds
        stopping = time.monotonic()
        private_postgres.stop(mode="fast")
        time.sleep(3)
        # (the probes, during the outage)
        ready = request(server.port, "GET", "/readyz")
        alive = request(server.port, "GET", "/healthz")
        time.sleep(7)
        private_postgres.start()
        back = time.monotonic()

        # then the API accepts publishes again by itself, soon after the restart
        recovered = wait_until(lambda: loader.accepted_since(back) > 0, 60, 0.05)
        first_202 = min((a.at for a in loader.answers if a.status == 202 and a.at > back),
                        default=float("nan"))
        time.sleep(2)
        answers = loader.stop()
        log = server.log_path.read_text(errors="replace")

    statuses = Counter(a.status for a in answers)
    during = Counter(a.status for a in answers if stopping <= a.at < back)
    accepted = {a.body["id"] for a in answers if a.status == 202}
    stored = set(_with_database(lambda: list(
        Event.objects.values_list("id", flat=True))))
    stored = {str(pk) for pk in stored}
    _say("database outage (PostgreSQL stopped 10 s) under 4 publishing clients",
         requests=len(answers), statuses=dict(statuses),
         outage_s=round(back - stopping, 1), during_outage=dict(during),
         client_errors=sum(1 for a in answers if a.error),
         first_202_after_restart_s=round(first_202 - back, 2),
         lost=len(accepted - stored), stored_but_not_202=len(stored - accepted),
         readyz=(ready.status, ready.body), healthz=alive.status)

    # then no 500, no broken connection: every answer is a 202 or a 503 with Retry-After
    assert statuses[500] == 0, [a for a in answers if a.status == 500][:3]
    assert not [a for a in answers if a.error], [a for a in answers if a.error][:3]
    assert set(statuses) == {202, 503}, statuses
    for answer in answers:
        if answer.status != 202:
            assert_service_unavailable(answer)
    assert "Internal Server Error" not in log
    # and every 202 is a committed event (none lost)
    assert accepted <= stored
    # and the API answered 202 again by itself
    assert recovered
    # and during the outage readiness said the database is down, liveness stayed up
    assert ready.status == 503 and ready.body["error"]["details"]["database"].startswith("down")
    assert "database" in ready.body["error"]["message"]
    assert alive.status == 200

    # and every accepted job runs once (the relay, Beat's every 5 s, sends any left behind)
    def all_terminal() -> bool:
        outbox_relay(grace_seconds=0)
        return not Job.objects.exclude(status=JobStatus.SUCCEEDED).exists()

    done = _with_database(lambda: wait_until(all_terminal, 90, 1))
    terminal_after = time.monotonic() - back
    jobs = Job.objects.count()
    doubled = (JobAttempt.objects.filter(outcome=AttemptOutcome.SUCCEEDED).count()
               - Job.objects.filter(status=JobStatus.SUCCEEDED).count())
    _say("database outage: jobs", jobs=jobs, all_terminal=done,
         terminal_after_restart_s=round(terminal_after, 1), doubled=doubled)
    assert done, workers.logs()
    assert doubled == 0
    assert worker.alive()

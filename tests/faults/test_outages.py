"""Infrastructure outages on real processes: the database stops under draining workers, a
worker dies mid-job, the broker runs out of memory or evicts keys. Every accepted job must end
terminal, once, without an operator, soon after the fault ends.

Each test has its own Redis (procs.RedisServer) and, where it stops the database, its own
PostgreSQL cluster (procs.PostgresServer, the `private_postgres` fixture): the shared servers
are never touched. What each test measured is printed (`-rP`) for the README's fault matrix.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest
from django.conf import settings
from django.db import OperationalError, connection

from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.outbox import outbox_send
from domain.jobs.services import job_create
from scheduler.schedules import SCHEDULES
from scheduler.sync import schedules_sync
from tests.faults.jobs import EFFECT, added_key, effects_key, runs_key
from tests.faults.procs import (
    RedisServer,
    fill_until_refused,
    free_ballast,
    free_port,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.postgres]


def _say(title: str, **numbers) -> None:
    print(f"[faults] {title}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def _count(**filters) -> int | None:
    """Rows matching, or None while the database does not answer (a connection broken by a
    restart is dropped and the query tried once more on a new one)."""
    for _ in range(2):
        try:
            return Job.objects.filter(**filters).count()
        except OperationalError:
            connection.close()
    return None


def _queue(n: int, kind=EFFECT, params: dict | None = None) -> list[Job]:
    """n jobs written at once and handed to the broker, one message each."""
    jobs = Job.objects.bulk_create(
        [Job(kind=kind.name, params=params or {}, max_attempts=kind.retry.max_attempts)
         for _ in range(n)])
    assert len(outbox_send(jobs, max_batch=1)) == n
    return jobs


def test_a_database_outage_while_workers_drain_strands_no_job(private_postgres, workers, beat,
                                                             effects):
    # given 2,000 jobs queued, one message each, a worker draining them, and Beat (the relay
    # and the orphan rescue, as in production: a job running when the database went away
    # cannot record its end, and its lease lapses)
    jobs = _queue(2000)
    worker = workers.start(concurrency=2)
    assert wait_until(lambda: (_count(status=JobStatus.SUCCEEDED) or 0) >= 100, 60)

    # when PostgreSQL stops for 10 seconds mid-drain
    private_postgres.stop(mode="fast")
    time.sleep(10)
    private_postgres.start()
    back = time.monotonic()
    left_at_restart = _count(status__in=[JobStatus.QUEUED, JobStatus.RETRYING,
                                         JobStatus.RUNNING])

    # then every job succeeds by itself (no operator) soon after
    done = wait_until(lambda: _count(status=JobStatus.SUCCEEDED) == len(jobs), 90, 0.5)
    terminal_after = time.monotonic() - back
    stranded = {s: _count(status=s) for s in (JobStatus.QUEUED, JobStatus.RUNNING,
                                              JobStatus.RETRYING, JobStatus.DEAD)}
    _say("database outage mid-drain", jobs=len(jobs), outage_s=10,
         unfinished_at_restart=left_at_restart, all_terminal=done,
         terminal_after_restart_s=round(terminal_after, 1), **stranded)
    assert done, f"not every job succeeded within 90 s of the database returning: {stranded}"
    assert worker.alive() and beat.alive(), beat.log()[-3000:]
    # and each job's effect happened exactly once
    assert effects.scard(effects_key()) == len(jobs)
    assert all(int(effects.get(added_key(job.pk)) or 0) == 1 for job in jobs[:200])


# --- A worker dies mid-job: leases -------------------------------------------------------

def _runs(effects, job_id) -> int:
    return int(effects.get(runs_key(job_id)) or 0)


# Short leases, and Beat running the orphan rescue every second: the workers lease for 3 s and
# the rescue (Beat's task, run by a worker) takes a lease lapsed for more than 1 s. The rescue
# judges leases only when its previous run is less than a lease ago, so its period stays under
# the lease. With the defaults (a 10 s lease, 5 s of grace, every 5 s) the same takes about 20 s
# (domain/jobs/rescue.py).
LEASE_SECONDS = 3
GRACE_SECONDS = 1
RESCUE_EVERY_SECONDS = 1
LEASE_ENV = {"JOB_LEASE_SECONDS": str(LEASE_SECONDS),
             "ORPHAN_GRACE_SECONDS": str(GRACE_SECONDS)}


@pytest.fixture
def quick_rescue(workers):
    """Beat running the project's schedules, the orphan rescue every second (the test starts
    its workers with LEASE_ENV)."""
    schedules_sync(schedules=tuple(
        replace(s, every_seconds=RESCUE_EVERY_SECONDS) if s.name == "orphan-rescue" else s
        for s in SCHEDULES), reset=True)
    return workers.start_beat(env=LEASE_ENV)


def _rescue_runs(worker) -> int:
    """Runs of the orphan rescue on `worker` that judged leases (from its log: the runs that
    ran and succeeded, less those that found their previous run too long ago and judged none;
    a tick skipped for another run's lock returns no counts)."""
    log = worker.log()
    ran = sum(1 for line in log.splitlines()
              if "conveyor.maintenance.rescue_orphans[" in line and "] succeeded in" in line
              and "'requeued'" in line)
    return ran - log.count("orphan rescue: first run after a gap")


@pytest.mark.parametrize("death", ["kill -9", "cold shutdown (SIGQUIT)"])
def test_a_job_whose_worker_dies_runs_again_within_seconds(workers, quick_rescue, effects,
                                                           death):
    # given a worker running a job that takes 8 seconds (in its first attempt only: the run
    # after the rescue does not wait again)
    first = workers.start(concurrency=1, env=LEASE_ENV)
    job = job_create(kind=EFFECT.name, params={"sleep": 8, "sleep_once": True})
    assert wait_until(lambda: _runs(effects, job.pk) == 1, 30)

    # when the worker dies mid-job, and another worker is there
    died = time.monotonic()
    if death == "kill -9":
        first.kill9()
    else:
        os.kill(first.pid, signal.SIGQUIT)
        first.proc.wait(timeout=20)
    workers.start(concurrency=1, env=LEASE_ENV)

    # then the job runs again within 30 seconds (its lease lapsed, the rescue took it) ...
    assert wait_until(lambda: _runs(effects, job.pk) == 2, 45, 0.2)
    rerun_after = time.monotonic() - died
    assert wait_until(lambda: _count(pk=job.pk, status=JobStatus.SUCCEEDED) == 1, 30, 0.2)
    done_after = time.monotonic() - died
    # ... with the lost attempt on record, and its effect once
    outcomes = list(JobAttempt.objects.filter(job=job).order_by("run", "number")
                    .values_list("outcome", flat=True))
    _say(f"worker {death} mid-job", rerun_after_s=round(rerun_after, 1),
         terminal_after_s=round(done_after, 1), attempts=outcomes)
    assert rerun_after <= 30
    assert outcomes == [AttemptOutcome.LOST, AttemptOutcome.SUCCEEDED]
    assert int(effects.get(added_key(job.pk)) or 0) == 1


SLOW_SECONDS = 8  # past the lease, its grace and a rescue period twice over


def test_a_slow_job_of_a_live_worker_is_never_taken_from_it(workers, quick_rescue, effects):
    # given a job that runs 8 seconds, over twice its 3 s lease, on a worker with a second
    # process free for the rescue, which runs every second (with one process, busy with the
    # job, the rescue's ticks would wait behind it and expire: no lease judged)
    worker = workers.start(concurrency=2, env=LEASE_ENV)
    job = job_create(kind=EFFECT.name, params={"sleep": SLOW_SECONDS})

    # when it runs to its end
    assert wait_until(lambda: _count(pk=job.pk, status=JobStatus.SUCCEEDED) == 1, 60, 0.2)
    rescues = _rescue_runs(worker)

    # then it ran once, with one attempt: its worker kept renewing its lease throughout, while
    # the rescue judged the leases again and again
    outcomes = list(JobAttempt.objects.filter(job=job).values_list("outcome", flat=True))
    _say("slow job, live worker", seconds=SLOW_SECONDS, lease_s=LEASE_SECONDS,
         rescue_runs_judging_leases=rescues, runs=_runs(effects, job.pk), attempts=outcomes)
    assert outcomes == [AttemptOutcome.SUCCEEDED]
    assert _runs(effects, job.pk) == 1
    assert rescues >= 2, worker.log()[-3000:]


# --- The broker runs out of memory -------------------------------------------------------

@pytest.fixture
def effects_server(tmp_path):
    """A second Redis of the test's own for the jobs' effects, so that filling the broker's
    memory tests the broker, not the effect counters."""
    server = RedisServer(free_port(), tmp_path / "effects-redis")
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


def test_a_full_broker_does_not_kill_the_worker(spare_redis, effects_server, workers):
    # given jobs queued, a worker taking them one by one (0.1 s each, the fifth 3 s), and Beat
    # (a message the full broker could not put back is the relay's, after OUTBOX_LOST_SECONDS)
    jobs = Job.objects.bulk_create(
        [Job(kind=EFFECT.name, params={"sleep": 3 if n == 4 else 0.1},
             max_attempts=EFFECT.retry.max_attempts) for n in range(40)])
    assert len(outbox_send(jobs, max_batch=1)) == len(jobs)
    env = {"REDIS_URL": effects_server.url(0)}
    worker = workers.start(concurrency=1, env=env)
    schedules_sync()
    beat = workers.start_beat(env=env)
    effects = effects_server.client()
    broker = spare_redis.client()
    assert wait_until(lambda: _runs(effects, jobs[4].pk) == 1, 30)

    # when the broker's memory fills up for 10 seconds (writes refused with OOM), while the
    # 3 s job runs: its end and acknowledgement meet the full broker
    fill_until_refused(broker)
    time.sleep(10)
    alive_during = worker.alive()
    free_ballast(broker)
    freed = time.monotonic()

    # then the worker survived, and every job succeeded once after the memory came back
    done = wait_until(lambda: _count(pk__in=[j.pk for j in jobs],
                                     status=JobStatus.SUCCEEDED) == len(jobs), 90, 0.5)
    _say("broker out of memory for 10 s", jobs=len(jobs), worker_alive_during=alive_during,
         worker_alive_after=worker.alive(), all_terminal=done,
         terminal_after_s=round(time.monotonic() - freed, 1),
         effects=effects.scard(effects_key()))
    assert alive_during and worker.alive() and beat.alive(), worker.log()[-3000:]
    assert done
    assert effects.scard(effects_key()) == len(jobs)


LOST_SECONDS = 5  # OUTBOX_LOST_SECONDS in the worker that runs the relay (30 s by default)


def test_an_evicting_broker_is_named_and_the_messages_it_dropped_come_back(
        spare_redis, effects_server, workers):
    # given 300 jobs queued while no worker runs, on a broker whose memory policy evicts keys
    jobs = _queue(300)
    admin, queue = spare_redis.client(), f"{settings.TEST_KEY_PREFIX}events"
    admin.config_set("maxmemory-policy", "allkeys-lru")
    admin.config_set("maxmemory", 20_000_000)

    # when memory runs short and Redis evicts keys, the queue list among them
    written = 0
    while spare_redis.client(14).exists(queue) and written < 3000:
        admin.set(f"faults:ballast:{written}", b"x" * 100_000)
        written += 1
    evicted = not spare_redis.client(14).exists(queue)
    admin.config_set("maxmemory", 0)  # room again; the policy stays, for the worker to see
    admin.delete(*(f"faults:ballast:{n}" for n in range(written)))
    gone = time.monotonic()

    # and a worker and Beat run (the relay every 5 s; a job whose queue is empty is judged
    # lost OUTBOX_LOST_SECONDS after its hand-over: 30 s by default, 5 s here)
    env = {"REDIS_URL": effects_server.url(0), "OUTBOX_LOST_SECONDS": str(LOST_SECONDS)}
    worker = workers.start(concurrency=2, env=env)
    schedules_sync()
    workers.start_beat(env=env)

    # then the worker says at start which setting is wrong ...
    assert "maxmemory-policy is allkeys-lru" in worker.log()
    # ... and every job succeeds, once, without an operator, long before the 30-minute
    # stale re-send
    done = wait_until(lambda: _count(pk__in=[j.pk for j in jobs],
                                     status=JobStatus.SUCCEEDED) == len(jobs), 60, 1)
    effects = effects_server.client()
    _say("evicting broker dropped the queue", jobs=len(jobs), queue_evicted=evicted,
         ballast_mb=written // 10, outbox_lost_seconds=LOST_SECONDS, all_terminal=done,
         terminal_after_eviction_s=round(time.monotonic() - gone, 1),
         effects=effects.scard(effects_key()))
    assert evicted and done
    assert effects.scard(effects_key()) == len(jobs)

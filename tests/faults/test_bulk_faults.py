"""Bulk runs on real processes (issue 14): a `kill -9` in the middle of a large
`catalog.reprice` on PostgreSQL, a pause that outlives the worker that honoured it, and a run
that outlasts the task's soft time limit.

Every run is started, steered and read through the API, carried out by real
`celery -A config worker` subprocesses on the suite's own Redis, and checked row by row
against prices computed here, in Python, with Decimal (ROUND_HALF_EVEN) from the prices read
before the run: a chunk applied twice would show as x1.21, a chunk lost as x1.

Where the kill (the pause, the time limit) lands is decided, not left to timing: the test
holds a row lock (`SELECT … FOR UPDATE`, a connection of its own) on one product in the middle
of the key order, and the run's lock timeout is long, so the worker's chunk that reaches that
row waits in its UPDATE with every earlier chunk committed. The fault comes once PostgreSQL
shows that UPDATE waiting. For the kill, the locked product is its chunk's last both in key
order and in the table's physical order (a no-op UPDATE moved it to the end of the heap), so
whichever way PostgreSQL scans the chunk, the killed chunk has written its other rows,
uncommitted.

The leases are short (JOB_LEASE_SECONDS=3 in the workers, ORPHAN_GRACE_SECONDS=1 in the test
process, which runs the orphan rescue every second as Beat would), as in
test_email_faults.py. The file takes about 40 s. What each test measured is printed (`-rP`).
"""

from __future__ import annotations

import threading
import time
from decimal import ROUND_HALF_EVEN, Decimal

import psycopg2
import pytest
from django.db import connection, connections
from django.urls import reverse

from domain.access.models import Scopes
from domain.bulk.models import BulkRun, BulkRunStatus
from domain.catalog.models import Product
from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.rescue import jobs_rescue_orphans
from tests.faults.procs import Worker, WorkerFactory, database_url, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.postgres]

LEASE_SECONDS = 3
GRACE_SECONDS = 1
CATEGORY = "faults"
OTHER = "untouched"
CHUNK = 2000
PERCENT = 10
FACTOR = Decimal(1) + Decimal(PERCENT) / 100
CENT = Decimal("0.01")
PRODUCTS = Product._meta.db_table
WORKER_ENV = {"JOB_LEASE_SECONDS": str(LEASE_SECONDS)}
# The chunk that meets the test's lock waits for it: far longer than the test needs.
THROTTLE = {"adaptive": False, "lock_timeout_seconds": 60}


def _say(title: str, **numbers) -> None:
    print(f"[faults] {title}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


@pytest.fixture
def short_leases(settings):
    """The rescue in this process judges leases the workers took with JOB_LEASE_SECONDS=3."""
    settings.JOB_LEASE_SECONDS = LEASE_SECONDS
    settings.ORPHAN_GRACE_SECONDS = GRACE_SECONDS


@pytest.fixture
def client(make_client):
    return make_client([Scopes.BULK_WRITE, Scopes.BULK_READ])


# --- Rows -----------------------------------------------------------------------------------

def _seed(n: int, others: int = 1000) -> dict[str, Decimal]:
    """`n` products in CATEGORY (one INSERT … SELECT), `others` in another category, with
    prices covering every cent from 0.00 to 999.99 (those ending in 5 cents are the ties of a
    +10%, where half-even and half-up differ). Answers every product's price, sku -> price,
    read back before any run."""
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {PRODUCTS} (id, sku, name, price, stock, status, category, "  # noqa: S608 - the model's own table
            "created_at, updated_at) "
            "SELECT gen_random_uuid(), 'BF-' || g, 'Product ' || g, "
            "((g * 7919) %% 100000)::numeric / 100, 0, 'active', "
            "CASE WHEN g <= %s THEN %s ELSE %s END, now(), now() "
            "FROM generate_series(1, %s) AS g", [n, CATEGORY, OTHER, n + others])
        cur.execute("ANALYZE " + PRODUCTS)
    return _prices()


def _prices() -> dict[str, Decimal]:
    with connection.cursor() as cur:
        cur.execute(f"SELECT sku, price FROM {PRODUCTS}")  # noqa: S608 - the model's own table
        return dict(cur.fetchall())


def _expected(original: Decimal) -> Decimal:
    return (original * FACTOR).quantize(CENT, rounding=ROUND_HALF_EVEN)


def _compare(before: dict[str, Decimal], done_up_to: str | None) -> dict:
    """Every product's price now against what it must be: CATEGORY's products up to the key
    `done_up_to` (a checkpoint) repriced once from their price before the run, every other
    product as it was."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT sku, price, (category = %s AND id <= %s::uuid) IS TRUE "  # noqa: S608 - the model's own table
                    f"FROM {PRODUCTS}", [CATEGORY, done_up_to])
        rows = cur.fetchall()
    mismatches, twice, missed, changed = [], 0, 0, 0
    for sku, price, done in rows:
        original = before[sku]
        want = _expected(original) if done else original
        changed += want != original
        if price != want:
            mismatches.append((sku, str(original), str(want), str(price)))
            twice += price == _expected(_expected(original))
            missed += price == original
    return {"rows": len(rows), "done": sum(done for *_, done in rows),
            "mismatches": mismatches, "applied_twice": twice, "missed": missed,
            "changed": changed}


def _assert_rows(compared: dict, before: dict[str, Decimal]) -> None:
    assert compared["rows"] == len(before)
    assert compared["mismatches"] == [], (
        f"{len(compared['mismatches'])} rows differ ({compared['applied_twice']} applied "
        f"twice, {compared['missed']} not applied), e.g. {compared['mismatches'][:5]}")


def _key_at(offset: int) -> str:
    """The primary key of CATEGORY's product at `offset` in key order (the run's order)."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT id FROM {PRODUCTS} WHERE category = %s "  # noqa: S608 - the model's own table
                    "ORDER BY id OFFSET %s LIMIT 1", [CATEGORY, offset])
        return str(cur.fetchone()[0])


def _last_key() -> str:
    with connection.cursor() as cur:
        cur.execute(f"SELECT max(id::text) FROM {PRODUCTS} WHERE category = %s",  # noqa: S608 - the model's own table
                    [CATEGORY])
        return cur.fetchone()[0]


class ProductLock:
    """`SELECT … FOR UPDATE` on one product, from a connection of its own, until released:
    the run's UPDATE of the chunk holding that row waits meanwhile."""

    def __init__(self, product_id: str) -> None:
        self.conn = psycopg2.connect(database_url())
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {PRODUCTS} WHERE id = %s FOR UPDATE",  # noqa: S608 - the model's own table
                        [product_id])
            assert cur.rowcount == 1

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


def _waiting(pattern: str) -> list[int]:
    """Backend pids of the test database's sessions waiting for a lock while running a
    statement that matches `pattern` (SQL LIKE)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE %s", [pattern])
        return [row[0] for row in cur.fetchall()]


def _written_by(pid: int) -> int:
    """Products the (uncommitted) transaction of backend `pid` has updated so far: their
    visible versions carry its transaction id as xmax."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {PRODUCTS} WHERE xmax = (SELECT backend_xid "  # noqa: S608 - the model's own table
                    "FROM pg_stat_activity WHERE pid = %s)", [pid])
        return cur.fetchone()[0]


def _gone(pids: list[int]) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
        return cur.fetchone()[0] == 0


CHUNK_UPDATE = f'UPDATE "{PRODUCTS}"%'
# (A SELECT of the run's row that waits for a lock is the FOR UPDATE; pg_stat_activity cuts a
# query at track_activity_query_size, 1 KiB, before the run's many columns reach FOR UPDATE.)
RUN_LOCK = f'SELECT "{BulkRun._meta.db_table}".%'


# --- The run, through the API -----------------------------------------------------------------

def _start(client) -> dict:
    response = client.post(reverse("bulk-run-list"), {
        "operation": "catalog.reprice", "args": {"category": CATEGORY, "percent": PERCENT},
        "chunk_size": CHUNK, "throttle": THROTTLE}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def _get(client, run_id: str) -> dict:
    response = client.get(reverse("bulk-run-detail", args=[run_id]))
    assert response.status_code == 200, response.content
    return response.json()


def _wait_status(client, run_id: str, status: str, timeout: float) -> dict:
    """The run as the API shows it once it has `status`, and its job has ended (the job's
    own record commits just after the run's last transaction)."""
    seen: dict = {}

    def reached() -> bool:
        seen.update(_get(client, run_id))
        assert seen["status"] not in (BulkRunStatus.FAILED, BulkRunStatus.CANCELLED), seen
        return seen["status"] == status and seen["job"]["status"] == JobStatus.SUCCEEDED

    assert wait_until(reached, timeout, 0.2), seen
    return seen


def _outcomes(job_id) -> list[str]:
    return list(JobAttempt.objects.filter(job_id=job_id).order_by("run", "number", "id")
                .values_list("outcome", flat=True))


def _worker(workers: WorkerFactory, *, ready: bool = True) -> Worker:
    return workers.start(concurrency=1, env=WORKER_ENV, ready_timeout=60 if ready else 0)


def _assert_run_done(run: dict, n: int, compared: dict) -> None:
    """The run's counters and checkpoint agree with the rows."""
    assert run["rows_matched"] == run["rows_done"] == compared["done"] == n
    assert run["checkpoint"] == {"last_key": _last_key(), "rows_done": n}
    assert run["rows_changed"] == compared["changed"]
    # Fixed-size chunks, none given back: every chunk was committed once.
    assert run["chunks"] == {"done": -(-n // CHUNK), "total": -(-n // CHUNK), "size": CHUNK}
    assert run["throttle"]["lock_retries"] == 0
    assert run["job"]["status"] == JobStatus.SUCCEEDED
    assert run["job"]["progress"] == {"done": n, "total": n}


# --- 1. kill -9 in the middle of a large run ------------------------------------------------

N_KILL = 200_000
CHUNKS_BEFORE_LOCK = 41  # the locked row is the last of chunk 42


def test_kill_9_mid_run_the_rescued_job_resumes_from_the_checkpoint_and_no_row_changes_twice(
        workers, client, short_leases):
    # given 200,000 products in one category (and 1,000 in another), their prices read
    # first, and one product locked by this test: the last row of the run's 42nd chunk
    started = time.monotonic()
    first = _worker(workers, ready=False)  # (it starts while the rows are written)
    before = _seed(N_KILL)
    seeded_s = time.monotonic() - started
    locked = _key_at((CHUNKS_BEFORE_LOCK + 1) * CHUNK - 1)
    with connection.cursor() as cur:  # (its new version goes to the end of the heap)
        cur.execute(f"UPDATE {PRODUCTS} SET name = name WHERE id = %s", [locked])  # noqa: S608 - the model's own table
    lock = ProductLock(locked)
    try:
        workers.wait_ready(first)

        # when a +10% reprice starts through the API, in fixed chunks of 2,000 rows ...
        run = _start(client)
        run_id, job_id = run["id"], run["job"]["id"]
        run_started = time.monotonic()
        # ... runs until its 42nd chunk waits for the locked row, 41 chunks committed ...
        assert wait_until(lambda: _waiting(CHUNK_UPDATE), 60, 0.05), _get(client, run_id)
        reached_lock_s = time.monotonic() - run_started
        at_kill = _get(client, run_id)
        job_at_kill = Job.objects.get(pk=job_id)
        waiting = _waiting(CHUNK_UPDATE)
        written_at_kill = _written_by(waiting[0])
        # ... and the worker's whole process group gets SIGKILL there
        first.kill9()
        killed = time.monotonic()
    finally:
        lock.release()
    # (the dead worker's session gets the row, ends its statement, finds its client gone and
    # rolls the chunk back)
    assert wait_until(lambda: _gone(waiting), 30, 0.05)
    after_kill = _compare(before, at_kill["checkpoint"]["last_key"])

    # and a new worker starts while the orphan rescue runs every second (as Beat would)
    # until it has requeued the job, whose lease lapsed
    second = _worker(workers, ready=False)

    def rescued() -> bool:
        jobs_rescue_orphans()
        return Job.objects.filter(pk=job_id).exclude(status=JobStatus.RUNNING).exists()

    assert wait_until(rescued, 30, 1.0), Job.objects.filter(pk=job_id).values().first()
    rescued_after = time.monotonic() - killed
    workers.wait_ready(second)

    # then the run succeeds
    done = _wait_status(client, run_id, BulkRunStatus.SUCCEEDED, 60)
    succeeded_after = time.monotonic() - killed
    compared = _compare(before, done["checkpoint"]["last_key"])
    _say("kill -9 mid bulk run", products=N_KILL, seeded_s=round(seeded_s, 1),
         reached_lock_s=round(reached_lock_s, 1), chunks_at_kill=at_kill["chunks"]["done"],
         rows_done_at_kill=at_kill["rows_done"],
         rows_written_by_the_killed_chunk=written_at_kill,
         wrong_rows_after_kill=len(after_kill["mismatches"]),
         rescued_after_s=round(rescued_after, 1), succeeded_after_s=round(succeeded_after, 1),
         run_elapsed_s=done["elapsed_seconds"], rate=done["rate"],
         rows_changed=done["rows_changed"], wrong_rows=len(compared["mismatches"]),
         applied_twice=compared["applied_twice"], job_attempts=_outcomes(job_id),
         total_s=round(time.monotonic() - started, 1))

    # the kill came mid-run: 41 chunks committed, the 42nd under way, the job running
    assert at_kill["status"] == BulkRunStatus.RUNNING
    assert at_kill["chunks"]["done"] == CHUNKS_BEFORE_LOCK
    assert at_kill["rows_done"] == CHUNKS_BEFORE_LOCK * CHUNK
    assert at_kill["checkpoint"]["last_key"] == _key_at(CHUNKS_BEFORE_LOCK * CHUNK - 1)
    assert at_kill["job"]["progress"] == {"done": CHUNKS_BEFORE_LOCK * CHUNK, "total": N_KILL}
    assert job_at_kill.status == JobStatus.RUNNING and job_at_kill.worker == first.name
    # ... with the 42nd chunk's other rows written (uncommitted) when the worker died, and
    # rolled back: exactly the rows up to the checkpoint had changed
    assert 0 < written_at_kill < CHUNK
    assert after_kill["done"] == CHUNKS_BEFORE_LOCK * CHUNK
    _assert_rows(after_kill, before)
    # every row changed exactly once (none twice, none missed), the counters agree
    _assert_rows(compared, before)
    _assert_run_done(done, N_KILL, compared)
    # and the job shows the lost attempt, then the one that finished the run, on the new worker
    assert _outcomes(job_id) == [AttemptOutcome.LOST, AttemptOutcome.SUCCEEDED]
    job = Job.objects.get(pk=job_id)
    assert job.attempts == 2 and job.worker == second.name
    assert str(BulkRun.objects.get(pk=run_id).job_id) == job_id  # the same job, resumed


# --- 2. Pause, worker restart, resume -------------------------------------------------------

N_PAUSE = 30_000
PAUSE_LOCK_CHUNK = 4  # the locked row is the first of chunk 5


def test_a_paused_run_survives_a_worker_restart_and_resumes_from_its_checkpoint(
        workers, client, short_leases):
    # given 30,000 products and one of them locked by this test (the first row of chunk 5)
    started = time.monotonic()
    first = _worker(workers, ready=False)  # (it starts while the rows are written)
    before = _seed(N_PAUSE)
    lock = ProductLock(_key_at(PAUSE_LOCK_CHUNK * CHUNK))
    pause_answer: dict = {}
    asking = None
    try:
        workers.wait_ready(first)

        # when a reprice runs until its 5th chunk waits for the locked row ...
        run = _start(client)
        run_id, first_job = run["id"], run["job"]["id"]
        assert wait_until(lambda: _waiting(CHUNK_UPDATE), 60, 0.05), _get(client, run_id)

        # ... and a pause is asked through the API (it waits for the run's row, which that
        # chunk holds: the pause is on record right after that chunk commits)
        def pause() -> None:
            try:
                t = time.monotonic()
                response = client.post(reverse("bulk-run-pause", args=[run_id]))
                pause_answer.update(status=response.status_code, body=response.json(),
                                    seconds=time.monotonic() - t)
            finally:
                connections.close_all()

        asking = threading.Thread(target=pause, name="pause-request")
        asking.start()
        assert wait_until(lambda: _waiting(RUN_LOCK), 30, 0.05), "the pause never waited"
    finally:
        lock.release()
        if asking is not None:
            asking.join(30)
    assert asking is not None and not asking.is_alive()

    # then the pause is accepted, and the run stops at a chunk boundary
    assert pause_answer.get("status") == 202, pause_answer
    assert pause_answer["body"]["requested"] == "pause"
    paused = _wait_status(client, run_id, BulkRunStatus.PAUSED, 30)
    at_pause = _compare(before, paused["checkpoint"]["last_key"])

    # when the worker is killed and another one starts
    first.kill9()
    second = _worker(workers)
    time.sleep(1)  # (a moment in which nothing must take the paused run up)
    still = _get(client, run_id)

    # and the run is resumed through the API
    response = client.post(reverse("bulk-run-resume", args=[run_id]))
    assert response.status_code == 202, response.content
    resumed = response.json()

    # then it runs to its end on the new worker, from its checkpoint, with a new job
    done = _wait_status(client, run_id, BulkRunStatus.SUCCEEDED, 60)
    second_job = done["job"]["id"]
    compared = _compare(before, done["checkpoint"]["last_key"])
    _say("pause, worker restart, resume", products=N_PAUSE,
         pause_request_s=round(pause_answer["seconds"], 2),
         chunks_at_pause=paused["chunks"]["done"], rows_done_at_pause=paused["rows_done"],
         wrong_rows_at_pause=len(at_pause["mismatches"]),
         wrong_rows=len(compared["mismatches"]), first_job=_outcomes(first_job),
         second_job=_outcomes(second_job), total_s=round(time.monotonic() - started, 1))

    # the pause took effect after the chunk that waited and before the run's end; the
    # committed chunks stayed committed, exactly the rows up to the checkpoint changed
    assert PAUSE_LOCK_CHUNK + 1 <= paused["chunks"]["done"] < -(-N_PAUSE // CHUNK)
    assert paused["rows_done"] == paused["chunks"]["done"] * CHUNK == at_pause["done"]
    assert paused["requested"] is None
    assert paused["checkpoint"]["last_key"] == _key_at(paused["rows_done"] - 1)
    _assert_rows(at_pause, before)
    # the first job ended with the pause, and nothing took the paused run up across the restart
    assert Job.objects.get(pk=first_job).result["status"] == BulkRunStatus.PAUSED
    assert still["status"] == BulkRunStatus.PAUSED
    assert still["checkpoint"] == paused["checkpoint"]
    # the resume made a new job, which finished the run on the new worker
    assert resumed["status"] == BulkRunStatus.QUEUED and resumed["job"]["id"] != first_job
    assert second_job == resumed["job"]["id"]
    assert _outcomes(first_job) == [AttemptOutcome.SUCCEEDED]
    assert _outcomes(second_job) == [AttemptOutcome.SUCCEEDED]
    assert Job.objects.get(pk=second_job).worker == second.name
    # every row changed exactly once, and the counters agree
    _assert_rows(compared, before)
    _assert_run_done(done, N_PAUSE, compared)


# --- 3. A run longer than the task's soft time limit -----------------------------------------

N_SLICES = 40_000
SOFT_LIMIT = 3
SLICE_LOCK_CHUNK = 5  # the locked row is the first of chunk 6


@pytest.fixture
def short_limits_sent(monkeypatch):
    """The messages this test process sends carry the worker's short limits too. A producer
    that has the task registered (any test that imported tasks.bulk) writes its own time
    limits into each message (Celery's exec options, cached on the task), and a worker obeys
    the message's limits over its own settings: the 3 s soft limit never struck."""
    from tasks.bulk import run as bulk_task

    monkeypatch.setattr(bulk_task, "soft_time_limit", SOFT_LIMIT)
    monkeypatch.setattr(bulk_task, "time_limit", SOFT_LIMIT + 20)
    monkeypatch.setattr(bulk_task, "_exec_options", None)


def test_a_run_outlasting_the_soft_time_limit_goes_on_in_slices_and_a_struck_chunk_is_redone(
        workers, client, short_leases, short_limits_sent):
    # given a worker whose tasks get a 3-second soft time limit (CELERY_TASK_SOFT_TIME_LIMIT;
    # BULK_SLICE_SECONDS keeps its default, 60 s), 40,000 products, and one locked by this
    # test: the first row of the run's 6th chunk
    started = time.monotonic()
    worker = workers.start(concurrency=1, ready_timeout=0, env={
        **WORKER_ENV, "CELERY_TASK_SOFT_TIME_LIMIT": str(SOFT_LIMIT),
        "CELERY_TASK_TIME_LIMIT": str(SOFT_LIMIT + 20)})
    before = _seed(N_SLICES)
    lock = ProductLock(_key_at(SLICE_LOCK_CHUNK * CHUNK))
    try:
        workers.wait_ready(worker)

        # when a reprice runs, 20 chunks 0.2 s apart (after the 6th, 2.8 s of pauses alone) ...
        response = client.post(reverse("bulk-run-list"), {
            "operation": "catalog.reprice", "args": {"category": CATEGORY, "percent": PERCENT},
            "chunk_size": CHUNK, "throttle": {**THROTTLE, "pause_seconds": 0.2}},
            format="json")
        assert response.status_code == 202, response.content
        run_id, job_id = response.json()["id"], response.json()["job"]["id"]
        # ... its 6th chunk waits for the locked row until the soft time limit strikes (the
        # exception is raised when the UPDATE returns, inside the chunk's transaction)
        assert wait_until(lambda: _waiting(CHUNK_UPDATE), 60, 0.05), _get(client, run_id)
        assert wait_until(lambda: "Soft time limit" in worker.log(), 30, 0.1), worker.log()
        at_strike = _get(client, run_id)
    finally:
        lock.release()

    # then the run goes on (the struck attempt retried from the checkpoint) and succeeds
    done = _wait_status(client, run_id, BulkRunStatus.SUCCEEDED, 60)
    compared = _compare(before, done["checkpoint"]["last_key"])
    log = worker.log()
    _say("run outlasting the soft time limit", products=N_SLICES, soft_limit_s=SOFT_LIMIT,
         chunks_at_strike=at_strike["chunks"]["done"],
         slices_ended=log.count("bulk run slice ended"),
         soft_limits_struck=log.count("Soft time limit"), job_attempts=_outcomes(job_id),
         run_elapsed_s=done["elapsed_seconds"], wrong_rows=len(compared["mismatches"]),
         total_s=round(time.monotonic() - started, 1))
    # the run worked in slices shorter than the soft limit, which struck only the chunk
    # that waited for the lock
    assert log.count("bulk run slice ended") >= 1
    assert log.count("Soft time limit") == 1
    assert at_strike["chunks"]["done"] == SLICE_LOCK_CHUNK
    assert at_strike["status"] == BulkRunStatus.RUNNING
    # the struck attempt was retried (the run was not failed for it): its error is on the
    # job's attempt, and the run, having succeeded, shows no error (as a succeeded job)
    assert _outcomes(job_id) == [AttemptOutcome.RETRY, AttemptOutcome.SUCCEEDED]
    struck = JobAttempt.objects.get(job_id=job_id, outcome=AttemptOutcome.RETRY)
    assert "soft time limit" in struck.error_message.lower(), struck.error_message
    assert done["last_error"] is None
    # every row changed exactly once (the struck chunk rolled back, then done once)
    _assert_rows(compared, before)
    _assert_run_done(done, N_SLICES, compared)

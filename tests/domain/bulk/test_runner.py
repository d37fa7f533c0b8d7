"""The chunk runner: keyset chunks in primary-key order, each chunk's writes, checkpoint and job
progress in one transaction, stops at chunk boundaries, resumes from the checkpoint, adaptive
chunk sizes, lock timeouts retried smaller, failures recorded on the run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from domain.bulk import runner
from domain.bulk.models import BulkRun, BulkRunStatus
from domain.bulk.services import (
    bulk_run_cancel,
    bulk_run_pause,
    bulk_run_resume,
    bulk_run_settle,
)
from domain.catalog.models import Product
from domain.events.models import Event
from domain.jobs import lifecycle
from domain.jobs.models import Job, JobStatus
from domain.jobs.rescue import jobs_rescue_orphans
from tests.bulk_utils import (
    deliver,
    fresh,
    hand_back,
    hold,
    make_products,
    prices,
    run_to_end,
    start,
)

REPRICE = "catalog.reprice"
UP_10 = {"category": "coffee", "percent": 10}


def _changed(products: list[Product]) -> list[bool]:
    """Per product (10.00 before a +10% run): repriced once (11.00), or untouched (10.00).
    Anything else (12.10: a chunk applied twice) fails."""
    found = prices(products)
    assert set(found) <= {Decimal("10.00"), Decimal("11.00")}, found
    return [price == Decimal("11.00") for price in found]


def _execute_claimed(run: BulkRun, on_progress=None):
    """What the worker does with one delivery of the run's job: claim it, run the body
    (with a hook after each committed chunk), record the outcome."""
    job = lifecycle.job_claim(job_id=str(fresh(run).job_id), worker="test@host")
    assert job is not None
    outcome = runner.bulk_run_execute(job=job, on_progress=on_progress)
    lifecycle.job_succeed(job=job, result=outcome)
    return outcome


# --- Chunks ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_chunks_visit_every_row_of_the_scope_once_in_primary_key_order():
    # given seven products in the category and two outside it
    products = make_products(7)
    others = make_products(2, category="tea")

    # when a +10% reprice runs in chunks of three to its end
    run = run_to_end(start(REPRICE, UP_10, chunk_size=3))

    # then every row of the category changed exactly once, and no other
    assert _changed(products) == [True] * 7
    assert prices(others) == [Decimal("10.00")] * 2
    assert (run.status, run.rows_matched, run.rows_done, run.rows_changed, run.chunks_done) == (
        BulkRunStatus.SUCCEEDED, 7, 7, 7, 3)
    assert run.checkpoint == str(products[-1].pk)
    assert (run.job.status, run.job.progress_done, run.job.progress_total) == (
        JobStatus.SUCCEEDED, 7, 7)


@pytest.mark.django_db
def test_each_chunk_moves_the_checkpoint_the_counters_and_the_job_progress(settings):
    # given seven products and a run whose time slice ends after every chunk
    settings.BULK_SLICE_SECONDS = 0
    products = make_products(7)
    run = start(REPRICE, UP_10, chunk_size=3)

    # when its job is delivered again and again, one chunk each time
    seen = []
    for _ in range(3):
        counts = deliver(run)
        run = fresh(run)
        seen.append((counts["deferred"], run.checkpoint, run.rows_done, run.chunks_done,
                     run.job.progress_done, run.job.progress_total, _changed(products)))

    # then each chunk took the next three keys, and what it wrote is what the run says
    assert seen[0] == (1, str(products[2].pk), 3, 1, 3, 7, [True] * 3 + [False] * 4)
    assert seen[1] == (1, str(products[5].pk), 6, 2, 6, 7, [True] * 6 + [False])
    assert seen[2] == (1, str(products[6].pk), 7, 3, 7, 7, [True] * 7)
    # and a slice's end costs the job no attempt: it is queued again, not retrying
    assert (run.status, run.job.status, run.job.attempts) == (
        BulkRunStatus.RUNNING, JobStatus.QUEUED, 0)

    # when it is delivered once more, it finds no rows left and ends
    deliver(run)
    run = fresh(run)
    assert (run.status, run.chunks_done, run.job.status) == (
        BulkRunStatus.SUCCEEDED, 3, JobStatus.SUCCEEDED)


# --- One transaction per chunk -------------------------------------------------------------

@contextmanager
def _updates_fail(model, condition: str) -> Iterator[None]:
    """A trigger failing every UPDATE of `model`'s rows that meets `condition` (SQL on NEW):
    a real error from the database, inside the chunk's transaction."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("CREATE FUNCTION bulk_test_fail() RETURNS trigger LANGUAGE plpgsql "
                           "AS $$ BEGIN RAISE EXCEPTION 'forced failure'; END $$")
            cursor.execute(f"CREATE TRIGGER bulk_test_fail BEFORE UPDATE ON {table} FOR EACH "
                           f"ROW WHEN ({condition}) EXECUTE FUNCTION bulk_test_fail()")
        else:
            cursor.execute(f"CREATE TRIGGER bulk_test_fail BEFORE UPDATE ON {table} FOR EACH "
                           f"ROW WHEN {condition} BEGIN SELECT RAISE(ABORT, 'forced failure'); "
                           "END")
    yield
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER bulk_test_fail ON {table}")
            cursor.execute("DROP FUNCTION bulk_test_fail()")
        else:
            cursor.execute("DROP TRIGGER bulk_test_fail")


def _key(product: Product) -> str:
    return str(Product._meta.pk.get_db_prep_value(product.pk, connection))


@pytest.mark.django_db
@pytest.mark.parametrize("failing", ["the product write", "the job progress write"])
def test_a_chunk_that_fails_leaves_the_chunks_before_it_and_nothing_of_itself(failing):
    # given six products, and a database that refuses the second chunk's product write or,
    # the last statement of its transaction, its job progress write
    products = make_products(6)
    run = start(REPRICE, UP_10, chunk_size=2)
    condition = (f"NEW.id = '{_key(products[3])}'" if failing == "the product write"
                 else "NEW.progress_done = 4")

    # when the run goes
    with _updates_fail(Product if failing == "the product write" else Job, condition):
        counts = deliver(run)

    # then the first chunk stays, with its checkpoint and progress, and the second left
    # nothing: no row of it, no checkpoint past the first chunk
    run = fresh(run)
    assert _changed(products) == [True, True, False, False, False, False]
    assert (run.checkpoint, run.rows_done, run.rows_changed, run.chunks_done) == (
        str(products[1].pk), 2, 2, 1)
    assert (run.job.progress_done, run.job.progress_total) == (2, 6)
    # and an error that retrying cannot fix fails the run and its job
    assert counts["dead"] == 1
    assert run.status == BulkRunStatus.FAILED and run.finished_at is not None
    assert "forced failure" in run.last_error["message"]
    assert run.job.status == JobStatus.DEAD
    assert not Event.objects.exists()

    # when the failed run is resumed once its cause is gone
    resumed = bulk_run_resume(run=run)
    assert resumed.status == BulkRunStatus.QUEUED and resumed.job_id != run.job_id
    run = run_to_end(resumed)

    # then it went on from its checkpoint: every row changed once
    assert _changed(products) == [True] * 6
    assert (run.status, run.rows_done, run.rows_changed, run.chunks_done) == (
        BulkRunStatus.SUCCEEDED, 6, 6, 3)


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_permanent_error_fails_the_run_and_a_resume_after_the_fix_completes_it():
    # given a category where one price, raised 10%, no longer fits numeric(12, 2)
    products = make_products(6)
    Product.objects.filter(pk=products[3].pk).update(price=Decimal("9999999999.99"))
    run = start(REPRICE, UP_10, chunk_size=2)

    # when the run goes
    counts = deliver(run)

    # then the chunk holding that row failed: the run is failed with the error, the job dead
    run = fresh(run)
    assert counts["dead"] == 1
    assert (run.status, run.rows_done, run.checkpoint) == (
        BulkRunStatus.FAILED, 2, str(products[1].pk))
    assert run.last_error["code"] == "DataError"
    assert "numeric field overflow" in run.last_error["message"]
    assert run.job.status == JobStatus.DEAD and run.job.attempts == 1
    # and its target is free again (a failed run holds nothing until it is resumed)
    assert run.target == "catalog.product"
    assert not BulkRun.objects.filter(target=run.target, status__in=(
        BulkRunStatus.QUEUED, BulkRunStatus.RUNNING, BulkRunStatus.PAUSED)).exists()

    # when the price is fixed and the run resumed
    Product.objects.filter(pk=products[3].pk).update(price=Decimal("10.00"))
    run = run_to_end(bulk_run_resume(run=run))

    # then it completes from its checkpoint, every row changed once
    assert _changed(products) == [True] * 6
    assert (run.status, run.rows_done, run.rows_changed) == (BulkRunStatus.SUCCEEDED, 6, 6)


# --- Deliveries the run has moved on from ----------------------------------------------------

@pytest.mark.django_db
def test_a_second_delivery_of_the_job_after_the_checkpoint_moved_changes_nothing(settings):
    # given a run of six rows in chunks of two
    products = make_products(6)
    run = start(REPRICE, UP_10, chunk_size=2)
    job = Job.objects.get(pk=run.job_id)
    second: list = []

    def meanwhile(done, total):
        # after the first delivery's first chunk, a second delivery of the same job (a
        # rescue racing a slow worker) runs one chunk (its slice ends at once)
        if not second:
            settings.BULK_SLICE_SECONDS = 0
            second.append(runner.bulk_run_execute(job=job))

    # when the first delivery goes on after that
    outcome = runner.bulk_run_execute(job=job, on_progress=meanwhile)

    # then it found the checkpoint moved and stopped: no chunk was applied twice
    assert isinstance(second[0], lifecycle.Deferred)
    assert outcome["superseded"] is True and outcome["checkpoint"] == str(products[3].pk)
    assert _changed(products) == [True] * 4 + [False] * 2
    run = fresh(run)
    assert (run.status, run.rows_done, run.chunks_done) == (BulkRunStatus.RUNNING, 4, 2)

    # and the run still completes from its checkpoint, every row once
    settings.BULK_SLICE_SECONDS = 60
    assert runner.bulk_run_execute(job=job)["status"] == BulkRunStatus.SUCCEEDED
    assert _changed(products) == [True] * 6

    # and a delivery after the end changes nothing either
    assert runner.bulk_run_execute(job=job)["skipped"] is True
    assert _changed(products) == [True] * 6
    assert Event.objects.filter(type="catalog.bulk_updated").count() == 1


@pytest.mark.django_db
def test_a_worker_whose_job_was_given_up_stops_once_the_run_is_resumed_with_another_job():
    # given a run of six rows in chunks of two, its worker (job 1) taken for dead after the
    # first chunk: the rescue gives its job up (out of attempts), the run is settled as
    # failed, resumed with job 2, and job 2's worker has begun it
    products = make_products(6)
    run = start(REPRICE, UP_10, chunk_size=2)
    Job.objects.filter(pk=run.job_id).update(max_attempts=1)
    first = lifecycle.job_claim(job_id=str(run.job_id), worker="frozen@host")
    taken_over: list = []

    def frozen_then_woken(done, total):
        if taken_over:
            return
        assert jobs_rescue_orphans(older_than=timedelta(0))["dead"] == 1
        assert bulk_run_settle(run=fresh(run)).status == BulkRunStatus.FAILED
        resumed = bulk_run_resume(run=fresh(run))
        second = lifecycle.job_claim(job_id=str(resumed.job_id), worker="new@host")
        taken_over.append(runner._begin(run_id=str(run.pk), job=second))

    # when the first worker wakes and goes on
    outcome = runner.bulk_run_execute(job=first, on_progress=frozen_then_woken)

    # then it stops at its next chunk: the run is job 2's now (its progress too), and job 2
    # goes on from the checkpoint, every row once
    assert outcome.get("superseded") is True, outcome
    assert _changed(products) == [True] * 2 + [False] * 4
    run = fresh(run)
    assert run.job_id == taken_over[0].job_id != first.pk and run.rows_done == 2
    second = Job.objects.get(pk=run.job_id)
    assert runner.bulk_run_execute(job=second)["status"] == BulkRunStatus.SUCCEEDED
    assert _changed(products) == [True] * 6
    assert Job.objects.get(pk=run.job_id).progress_done == 6


# --- Dry run -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_dry_run_counts_what_would_change_and_changes_nothing():
    # given five products, two of which a +10% reprice leaves as they are
    products = make_products(3) + make_products(2, price="0.00")

    # when a dry run goes
    run = run_to_end(start(REPRICE, UP_10, dry_run=True))

    # then it counted the three rows that would change, changed none and published nothing
    assert (run.status, run.rows_done, run.rows_changed, run.result) == (
        BulkRunStatus.SUCCEEDED, 5, 3, {"would_change": 3})
    assert prices(products) == [Decimal("10.00")] * 3 + [Decimal("0.00")] * 2
    assert run.target is None
    assert not Event.objects.exists()


# --- Pause, cancel, resume -------------------------------------------------------------------

@pytest.mark.django_db
def test_a_pause_asked_for_while_a_chunk_runs_takes_effect_at_the_next_boundary():
    # given a run of six rows in chunks of two
    products = make_products(6)
    run = start(REPRICE, UP_10, chunk_size=2)

    def operator_pauses(done, total):
        if done == 2:
            paused = bulk_run_pause(run=run)
            # (the worker has the run: the pause is asked for, not yet done)
            assert (paused.status, paused.requested) == (BulkRunStatus.RUNNING, "pause")

    # when an operator pauses it after its first chunk
    outcome = _execute_claimed(run, on_progress=operator_pauses)

    # then the run stopped at the chunk boundary: the first chunk committed, nothing after
    run = fresh(run)
    assert outcome["status"] == BulkRunStatus.PAUSED
    assert (run.status, run.requested, run.rows_done, run.checkpoint) == (
        BulkRunStatus.PAUSED, "", 2, str(products[1].pk))
    assert _changed(products) == [True, True, False, False, False, False]
    assert run.finished_at is None and run.target == "catalog.product"  # still holds it

    # when it is resumed
    old_job = run.job
    resumed = bulk_run_resume(run=run)

    # then a new job carries it on from the checkpoint, and every row changed once
    assert resumed.status == BulkRunStatus.QUEUED and resumed.job_id != old_job.pk
    run = run_to_end(resumed)
    assert (run.status, run.rows_done, run.rows_changed, run.chunks_done) == (
        BulkRunStatus.SUCCEEDED, 6, 6, 3)
    assert _changed(products) == [True] * 6
    # and the old job, delivered again, changes nothing
    assert runner.bulk_run_execute(job=old_job)["skipped"] is True
    assert _changed(products) == [True] * 6


@pytest.mark.django_db
def test_a_cancel_asked_for_while_a_chunk_runs_stops_at_the_next_boundary():
    # given a run of six rows in chunks of two
    products = make_products(6)
    run = start(REPRICE, UP_10, chunk_size=2)

    # when an operator cancels it after its second chunk
    outcome = _execute_claimed(run, on_progress=lambda done, total: (
        bulk_run_cancel(run=run) if done == 4 else None))

    # then the chunks committed stay, the rest is not done, and the run says how far it got
    run = fresh(run)
    assert outcome["status"] == BulkRunStatus.CANCELLED
    assert (run.status, run.requested, run.rows_done, run.checkpoint) == (
        BulkRunStatus.CANCELLED, "", 4, str(products[3].pk))
    assert run.finished_at is not None
    assert _changed(products) == [True] * 4 + [False] * 2
    # and it published nothing and holds nothing: a new run on its rows may start
    assert not Event.objects.exists()
    assert start(REPRICE, UP_10).status == BulkRunStatus.QUEUED


@pytest.mark.django_db
def test_requests_made_while_a_worker_has_the_job_are_honoured_at_its_next_boundary(settings):
    # given a run whose slice ends after every chunk, one chunk done
    settings.BULK_SLICE_SECONDS = 0
    products = make_products(6)
    run = start(REPRICE, UP_10, chunk_size=2)
    deliver(run)

    # when it is paused while a worker has its job, and that worker's slice ends
    held = hold(run)
    assert bulk_run_pause(run=run).requested == "pause"
    hand_back(held)
    deliver(run)

    # then that delivery pauses it without a chunk
    run = fresh(run)
    assert (run.status, run.rows_done, run.job.status) == (
        BulkRunStatus.PAUSED, 2, JobStatus.SUCCEEDED)
    assert run.job.result["status"] == BulkRunStatus.PAUSED

    # when it is resumed, runs one more slice, is cancelled and its job comes again
    bulk_run_resume(run=run)
    deliver(run)
    held = hold(run)
    assert bulk_run_cancel(run=run).requested == "cancel"
    hand_back(held)
    deliver(run)

    # then the cancel took effect at that boundary, after the second chunk
    run = fresh(run)
    assert (run.status, run.rows_done, run.checkpoint) == (
        BulkRunStatus.CANCELLED, 4, str(products[3].pk))
    assert _changed(products) == [True] * 4 + [False] * 2


# --- Throttle ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_pauses_between_chunks_count_in_the_elapsed_time_its_rate_is_read_from():
    # given a run of three chunks with a pause of 0.2 s after each
    make_products(6)
    run = start(REPRICE, UP_10, chunk_size=2, pause_seconds=0.2)

    # when it runs to its end
    run = run_to_end(run)

    # then its elapsed time holds the two pauses between its chunks (the one after the last
    # is not between chunks), so the rate the API shows and its ETA are the throttled run's
    assert (run.status, run.chunks_done) == (BulkRunStatus.SUCCEEDED, 3)
    assert run.elapsed_seconds >= 0.4


# --- Adaptive chunk size ---------------------------------------------------------------------

@pytest.mark.parametrize(("rows", "seconds", "expected"), [
    (100, 0.5, 100),   # on target: unchanged
    (100, 0.25, 200),  # twice as fast as the target: twice the rows
    (100, 0.4, 125),   # towards the target's size
    (100, 0.625, 80),
    (100, 0.01, 200),  # fifty times too fast: at most x2 per chunk
    (100, 10.0, 50),   # twenty times too slow: at most /2 per chunk
    (100, 0.0, 200),   # too fast to measure
    (60, 0.01, 100),   # the last, short chunk says nothing about the rate
])
def test_the_next_chunk_size_moves_towards_the_target_duration(settings, rows, seconds,
                                                               expected):
    settings.BULK_MIN_CHUNK_SIZE, settings.BULK_MAX_CHUNK_SIZE = 10, 10_000
    run = BulkRun(chunk_size=100, adaptive=True, target_chunk_seconds=0.5)
    assert runner._next_chunk_size(run, rows, seconds) == expected


def test_the_next_chunk_size_stays_within_its_bounds_and_is_fixed_when_not_adaptive(settings):
    settings.BULK_MIN_CHUNK_SIZE, settings.BULK_MAX_CHUNK_SIZE = 80, 150
    run = BulkRun(chunk_size=100, adaptive=True, target_chunk_seconds=0.5)
    assert runner._next_chunk_size(run, 100, 10.0) == 80
    assert runner._next_chunk_size(run, 100, 0.01) == 150
    fixed = BulkRun(chunk_size=100, adaptive=False, target_chunk_seconds=0.5)
    assert runner._next_chunk_size(fixed, 100, 10.0) == 100


@pytest.mark.django_db
@pytest.mark.parametrize(("first", "target", "sizes"), [
    # chunks far quicker than a 30 s target: x2 per chunk up to the maximum, 8
    (1, 30.0, [2, 4, 8, 8, 8]),
    # chunks far slower than a 1 µs target: /2 per chunk down to the minimum, 2
    (8, 1e-6, [4, 2, 2, 2, 2]),
])
def test_a_running_run_adapts_its_chunk_size_chunk_by_chunk(settings, first, target, sizes):
    # given a run whose slice ends after every chunk, with chunk sizes bounded to 2..8
    settings.BULK_SLICE_SECONDS = 0
    settings.BULK_MIN_CHUNK_SIZE, settings.BULK_MAX_CHUNK_SIZE = 2, 8
    products = make_products(40)
    run = start(REPRICE, UP_10, chunk_size=first, adaptive=True, target_chunk_seconds=target)

    # when five chunks run
    seen, done = [], []
    for _ in sizes:
        deliver(run)
        run = fresh(run)
        seen.append(run.chunk_size)
        done.append(run.rows_done)

    # then each chunk's size is the one the chunk before chose
    assert seen == sizes
    assert [b - a for a, b in zip([0, *done], done, strict=False)] == [first, *sizes[:-1]]
    assert sum(_changed(products)) == done[-1]


# --- Rows locked by others ---------------------------------------------------------------------

@contextmanager
def _row_locked(product: Product) -> Iterator[None]:
    """Another connection (another thread's) holds the product's row lock until the block
    ends."""
    locked, release, failed = threading.Event(), threading.Event(), []

    def hold() -> None:
        try:
            with transaction.atomic():
                Product.objects.select_for_update().get(pk=product.pk)
                locked.set()
                release.wait(60)
        except BaseException as exc:  # noqa: BLE001 - reported in the test's thread
            failed.append(exc)
            locked.set()
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(10) and not failed, failed
    try:
        yield
    finally:
        release.set()
        thread.join(10)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_locked_rows_are_retried_in_smaller_chunks_then_the_attempt_fails_transiently(
        settings, private_broker):
    # given eight products, one of which another connection holds locked, and a run with
    # chunks of four, a 50 ms lock timeout and two lock retries per chunk
    settings.BULK_MIN_CHUNK_SIZE, settings.BULK_LOCK_RETRIES = 1, 2
    products = make_products(8)
    run = start(REPRICE, UP_10, chunk_size=4, lock_timeout_seconds=0.05)

    with _row_locked(products[5]):
        # when the run goes
        counts = deliver(run)

        # then the chunk meeting the lock was given back and retried at half the size until
        # it held no locked row; the chunk of the locked row alone failed three times, which
        # fails the attempt: the run goes on showing the error, its job retrying
        run = fresh(run)
        assert counts["retrying"] == 1
        assert _changed(products) == [True] * 5 + [False] * 3
        assert (run.status, run.rows_done, run.checkpoint) == (
            BulkRunStatus.RUNNING, 5, str(products[4].pk))
        assert (run.chunk_size, run.lock_retries) == (1, 4)
        assert run.last_error["code"] == "OperationalError"
        assert "lock timeout" in run.last_error["message"]
        assert (run.job.status, run.job.attempts) == (JobStatus.RETRYING, 1)
        # (its retry is on its way, after the message this test delivered in process)
        assert private_broker.job_ids("bulk") == [str(run.job_id)] * 2

    # when the lock is gone and the retry comes (its backoff over)
    Job.objects.filter(pk=run.job_id).update(next_retry_at=timezone.now() - timedelta(seconds=1))
    deliver(run)

    # then the run completes from its checkpoint: every row changed once
    run = fresh(run)
    assert (run.status, run.rows_done, run.rows_changed) == (BulkRunStatus.SUCCEEDED, 8, 8)
    assert _changed(products) == [True] * 8
    assert (run.job.status, run.job.attempts) == (JobStatus.SUCCEEDED, 2)



@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunk_given_back_at_its_job_progress_write_is_retried_from_the_same_checkpoint(
        settings):
    # given six products, a run of chunks of two with a 50 ms lock timeout, and another
    # connection that takes the job's row lock once the first chunk has committed, until the
    # runner has given a chunk back for it
    settings.BULK_LOCK_RETRIES = 10
    products = make_products(6)
    run = start(REPRICE, UP_10, chunk_size=2, lock_timeout_seconds=0.05)
    job = lifecycle.job_claim(job_id=str(run.job_id), worker="test@host")
    locked, failed, holders = threading.Event(), [], []

    def hold_job_row() -> None:
        try:
            with transaction.atomic():
                Job.objects.select_for_update().get(pk=job.pk)
                locked.set()
                while not BulkRun.objects.filter(pk=run.pk, lock_retries__gte=1).exists():
                    threading.Event().wait(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported in the test's thread
            failed.append(exc)
            locked.set()
        finally:
            connection.close()

    def after_chunk(done, total) -> None:
        if not holders:
            holders.append(threading.Thread(target=hold_job_row))
            holders[0].start()
            assert locked.wait(10) and not failed, failed

    # when the run goes: the second chunk's last write (the job's progress) meets the lock
    outcome = runner.bulk_run_execute(job=job, on_progress=after_chunk)
    holders[0].join(30)

    # then the chunk was rolled back and tried again from the checkpoint it started from:
    # the run went on to the end, every row changed once (it was taken for "moved by another
    # delivery" and stopped, its own uncommitted checkpoint compared with the committed one)
    assert not failed, failed
    run = fresh(run)
    assert run.lock_retries >= 1
    assert "superseded" not in outcome, outcome
    assert (run.status, run.rows_done, run.rows_changed) == (BulkRunStatus.SUCCEEDED, 6, 6)
    assert _changed(products) == [True] * 6

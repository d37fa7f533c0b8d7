"""Starting and steering bulk runs: what a start checks, the one holder of a target, and the
state rules of pause, resume and cancel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from domain.bulk.models import BulkRun, BulkRunStatus
from domain.bulk.services import (
    Throttle,
    bulk_run_cancel,
    bulk_run_pause,
    bulk_run_resume,
    bulk_run_start,
)
from domain.common.errors import Conflict, ValidationFailed
from domain.jobs import lifecycle
from domain.jobs.models import Job, JobStatus
from domain.jobs.rescue import jobs_rescue_orphans
from tests.bulk_utils import (
    csv_bytes,
    deliver,
    fresh,
    hand_back,
    hold,
    input_tables,
    make_products,
    run_to_end,
    start,
)
from tests.conftest import simultaneously
from tests.factories import ProductFactory

REPRICE = "catalog.reprice"
UP_10 = {"category": "coffee", "percent": 10}


def _refused(error_type, call, **kwargs):
    with pytest.raises(error_type) as refused:
        call(**kwargs)
    return refused.value


# --- Start: what is checked -------------------------------------------------------------------

@pytest.mark.django_db
def test_an_unknown_operation_is_refused_naming_the_known_ones():
    error = _refused(ValidationFailed, bulk_run_start, operation="catalog.delete_all", args={})
    assert (error.status_code, error.code) == (422, "unknown_operation")
    assert error.details["operation"] == "catalog.delete_all"
    assert set(error.details["known"]) == {"catalog.reprice", "catalog.set_prices",
                                           "catalog.set_status", "customers.deactivate_inactive"}
    assert not BulkRun.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("operation", "args"), [
    (REPRICE, {"category": "coffee"}),                          # percent missing
    (REPRICE, {"category": "coffee", "percent": "10"}),         # not a number
    (REPRICE, {"category": "coffee", "percent": -100}),         # a price of zero for all
    (REPRICE, {"category": "", "percent": 10}),
    (REPRICE, {"category": "coffee", "percent": 10, "sql": "1"}),  # no other field
    (REPRICE, ["coffee", 10]),
    ("catalog.set_status", {"status": "gone", "skus": ["A"]}),
    ("catalog.set_status", {"status": "inactive"}),             # neither skus nor category
    ("catalog.set_status", {"status": "inactive", "skus": ["A"], "category": "tea"}),  # both
    ("catalog.set_status", {"status": "inactive", "skus": []}),
    ("catalog.set_status", {"status": "inactive", "skus": ["A", "A"]}),
    ("customers.deactivate_inactive", {"days": 0}),
    ("customers.deactivate_inactive", {"days": 1.5}),
])
def test_args_that_fail_the_operations_schema_are_refused(operation, args):
    error = _refused(ValidationFailed, bulk_run_start, operation=operation, args=args)
    assert (error.status_code, error.code) == (422, "invalid_args")
    assert error.details["args"]
    assert not BulkRun.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_an_operation_taking_rows_needs_a_csv_and_one_taking_args_refuses_one():
    make_products(1, sku="SKU-1")
    error = _refused(ValidationFailed, bulk_run_start, operation="catalog.set_prices", args={})
    assert (error.code, error.details["columns"]) == ("csv_required", ["sku", "price"])
    error = _refused(ValidationFailed, start, operation=REPRICE, args=UP_10,
                     csv=csv_bytes([("SKU-1", "1.00")]))
    assert error.code == "csv_not_accepted"
    assert not BulkRun.objects.exists() and not Job.objects.exists() and not input_tables()


@pytest.mark.django_db
def test_a_run_is_stored_with_its_plan_throttle_and_job(settings):
    # when a run starts with some throttle fields given
    run = bulk_run_start(operation=REPRICE, args={"category": "tea", "percent": -12.5},
                         throttle=Throttle(chunk_size=50, pause_seconds=0.2))

    # then it is queued with its resolved plan, its throttle (the rest from the settings),
    # its target and a queued job of kind bulk_run naming it
    run = fresh(run)
    assert (run.status, run.plan, run.target) == (
        BulkRunStatus.QUEUED, {"category": "tea", "factor": "0.875"}, "catalog.product")
    assert (run.chunk_size, run.pause_seconds, run.adaptive, run.target_chunk_seconds,
            run.lock_timeout_seconds) == (50, 0.2, settings.BULK_ADAPTIVE,
                                          settings.BULK_TARGET_CHUNK_SECONDS,
                                          settings.BULK_LOCK_TIMEOUT_SECONDS)
    assert (run.job.kind, run.job.status, run.job.params) == (
        "bulk_run", JobStatus.QUEUED, {"run_id": str(run.pk)})


# --- One holder per target ---------------------------------------------------------------------

@pytest.mark.django_db
def test_a_second_run_on_a_held_target_is_refused_naming_the_holder():
    # given a queued reprice, which holds the product table
    first = start(REPRICE, UP_10)

    # when other catalog runs start, then one on another target
    error = _refused(Conflict, start, operation="catalog.set_status",
                     args={"status": "inactive", "category": "tea"})
    customers = start("customers.deactivate_inactive", {"days": 30})

    # then the catalog one is refused with a 409 naming the first; the other target is free
    assert (error.status_code, error.code) == (409, "bulk_target_busy")
    assert error.details == {"target": "catalog.product", "run": str(first.pk),
                             "operation": REPRICE, "status": "queued"}
    assert customers.status == BulkRunStatus.QUEUED
    assert BulkRun.objects.count() == 2 and Job.objects.count() == 2  # nothing of the refused


@pytest.mark.django_db
@pytest.mark.parametrize("holder_ends", ["succeeded", "cancelled", "failed"])
def test_a_target_is_free_again_once_its_holder_has_ended(holder_ends):
    make_products(2)
    first = start(REPRICE, UP_10)
    if holder_ends == "succeeded":
        run_to_end(first)
    elif holder_ends == "cancelled":
        bulk_run_cancel(run=first)
    else:
        BulkRun.objects.filter(pk=first.pk).update(status=BulkRunStatus.FAILED)
    assert fresh(first).status == holder_ends
    assert start(REPRICE, UP_10).status == BulkRunStatus.QUEUED


@pytest.mark.django_db
def test_a_paused_run_still_holds_its_target():
    first = start(REPRICE, UP_10)
    bulk_run_pause(run=first)
    assert fresh(first).status == BulkRunStatus.PAUSED
    error = _refused(Conflict, start, operation=REPRICE, args=UP_10)
    assert error.details["run"] == str(first.pk) and error.details["status"] == "paused"


@pytest.mark.django_db
def test_dry_runs_hold_no_target():
    # given a real run holding the product table
    holder = start(REPRICE, UP_10)

    # when dry runs of the same and of another catalog operation start
    dry = [start(REPRICE, UP_10, dry_run=True),
           start("catalog.set_status", {"status": "inactive", "category": "coffee"},
                 dry_run=True)]

    # then they are accepted and hold nothing; the holder still holds the target
    assert [(r.status, r.target) for r in dry] == [(BulkRunStatus.QUEUED, None)] * 2
    assert _refused(Conflict, start, operation=REPRICE, args=UP_10).details["run"] == str(
        holder.pk)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_of_runs_started_at_the_same_instant_on_one_target_one_gets_in(private_broker):
    # when four clients start runs on the product table at once
    connection.close()

    def start_one():
        try:
            return str(start(REPRICE, UP_10).pk)
        except Conflict as exc:
            return exc

    answers = simultaneously(4, start_one)

    # then the database let exactly one in; the others were refused naming it
    winners = [a for a in answers if isinstance(a, str)]
    assert len(winners) == 1, answers
    refusals = [a for a in answers if isinstance(a, Conflict)]
    assert [(r.code, r.details["run"]) for r in refusals] == [
        ("bulk_target_busy", winners[0])] * 3
    # and the refused ones left no run and no job behind
    assert [str(pk) for pk in BulkRun.objects.values_list("pk", flat=True)] == winners
    assert list(Job.objects.values_list("params__run_id", flat=True)) == winners


# --- Pause ---------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_pausing_a_run_no_worker_has_yet_pauses_it_at_once_and_cancels_its_job():
    run = start(REPRICE, UP_10)
    paused = bulk_run_pause(run=run)
    assert (paused.status, paused.requested) == (BulkRunStatus.PAUSED, "")
    assert Job.objects.get(pk=run.job_id).status == JobStatus.CANCELLED
    # and its job, delivered anyway, is not run
    assert deliver(run)["claimed"] == 0


@pytest.mark.django_db
def test_pausing_a_running_run_asks_for_a_pause_and_asking_again_changes_nothing(settings):
    settings.BULK_SLICE_SECONDS = 0
    make_products(4)
    run = start(REPRICE, UP_10)
    deliver(run)  # one chunk: running, its job waiting for the next slice
    held = hold(run)  # ... which a worker has taken
    assert fresh(run).status == BulkRunStatus.RUNNING
    assert (bulk_run_pause(run=run).requested, bulk_run_pause(run=run).requested) == (
        "pause", "pause")
    assert fresh(run).status == BulkRunStatus.RUNNING
    hand_back(held)
    deliver(run)
    assert bulk_run_pause(run=run).status == BulkRunStatus.PAUSED  # (paused: nothing to do)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_an_ended_run_cannot_be_paused(status):
    run = start(REPRICE, UP_10)
    BulkRun.objects.filter(pk=run.pk).update(status=status)
    error = _refused(Conflict, bulk_run_pause, run=run)
    assert (error.status_code, error.code, error.details) == (
        409, "bulk_run_not_paused", {"status": status})


@pytest.mark.django_db
def test_a_run_being_cancelled_cannot_be_paused(settings):
    settings.BULK_SLICE_SECONDS = 0
    make_products(4)
    run = start(REPRICE, UP_10)
    deliver(run)
    hold(run)
    bulk_run_cancel(run=run)
    error = _refused(Conflict, bulk_run_pause, run=run)
    assert (error.code, error.details["requested"]) == ("bulk_run_not_paused", "cancel")


# --- Resume ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_resuming_a_paused_run_queues_it_with_a_new_job():
    run = start(REPRICE, UP_10)
    bulk_run_pause(run=run)
    resumed = bulk_run_resume(run=run)
    assert (resumed.status, resumed.finished_at) == (BulkRunStatus.QUEUED, None)
    job = Job.objects.get(pk=resumed.job_id)
    assert job.pk != run.job_id and (job.kind, job.status) == ("bulk_run", JobStatus.QUEUED)


@pytest.mark.django_db
def test_resuming_while_a_pause_is_still_on_its_way_withdraws_it(settings):
    settings.BULK_SLICE_SECONDS = 0
    products = make_products(4)
    run = start(REPRICE, UP_10)
    deliver(run)
    held = hold(run)
    bulk_run_pause(run=run)

    # when the pause is withdrawn before the run reaches its chunk boundary
    resumed = bulk_run_resume(run=run)
    hand_back(held)

    # then the same job carries on to the end
    assert (resumed.status, resumed.requested, resumed.job_id) == (
        BulkRunStatus.RUNNING, "", run.job_id)
    settings.BULK_SLICE_SECONDS = 60
    assert run_to_end(run).status == BulkRunStatus.SUCCEEDED
    assert fresh(run).rows_changed == len(products)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["queued", "running", "succeeded", "cancelled"])
def test_only_paused_or_failed_runs_can_be_resumed(status):
    run = start(REPRICE, UP_10)
    BulkRun.objects.filter(pk=run.pk).update(status=status)
    error = _refused(Conflict, bulk_run_resume, run=run)
    assert (error.status_code, error.code, error.details) == (
        409, "bulk_run_not_resumed", {"status": status})
    assert fresh(run).job_id == run.job_id  # no new job


@pytest.mark.django_db
def test_a_failed_run_cannot_take_its_target_back_from_a_run_that_took_it_meanwhile():
    # given a failed run, and another run that started on the same rows since
    failed = start(REPRICE, UP_10)
    BulkRun.objects.filter(pk=failed.pk).update(status=BulkRunStatus.FAILED)
    holder = start(REPRICE, {"category": "coffee", "percent": 5})

    # when the failed one is resumed
    error = _refused(Conflict, bulk_run_resume, run=failed)

    # then it is refused naming the holder, and stays failed with its old job
    assert (error.code, error.details["run"]) == ("bulk_target_busy", str(holder.pk))
    failed = fresh(failed)
    assert failed.status == BulkRunStatus.FAILED and Job.objects.count() == 2


@pytest.mark.django_db
def test_a_csv_run_whose_rows_are_gone_cannot_be_resumed():
    # (a failed run keeps its input table; this guards against one dropped by other means)
    ProductFactory(sku="SKU-1")
    run = start("catalog.set_prices", csv=csv_bytes([("SKU-1", "2.00")]))
    bulk_run_pause(run=run)
    bulk_run_cancel(run=run)  # a cancelled run drops its rows
    assert not input_tables()
    BulkRun.objects.filter(pk=run.pk).update(status=BulkRunStatus.FAILED)
    error = _refused(Conflict, bulk_run_resume, run=run)
    assert error.code == "bulk_run_not_resumed"


# --- Cancel ------------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("before", ["queued", "paused"])
def test_cancelling_a_run_no_worker_has_ends_it_at_once(before):
    ProductFactory(sku="SKU-1")
    run = start("catalog.set_prices", csv=csv_bytes([("SKU-1", "2.00")]))
    if before == "paused":
        bulk_run_pause(run=run)
    assert input_tables() == [run.input_table]

    cancelled = bulk_run_cancel(run=run)

    assert (cancelled.status, cancelled.requested) == (BulkRunStatus.CANCELLED, "")
    assert cancelled.finished_at is not None
    assert Job.objects.get(pk=run.job_id).status == JobStatus.CANCELLED
    # and its CSV rows are dropped, and cancelling again changes nothing
    assert not input_tables() and fresh(run).input_table == ""
    assert bulk_run_cancel(run=run).status == BulkRunStatus.CANCELLED


@pytest.mark.django_db
def test_a_run_between_slices_is_paused_or_cancelled_at_once(settings):
    # given a running run whose job waits for its next slice (no worker has it)
    settings.BULK_SLICE_SECONDS = 0
    make_products(4)
    run = start(REPRICE, UP_10)
    deliver(run)
    # then a pause is made now (its job cancelled, so no chunk can start), and so is a cancel
    paused = bulk_run_pause(run=run)
    assert (paused.status, paused.requested, paused.rows_done) == (
        BulkRunStatus.PAUSED, "", 2)
    assert fresh(paused).job.status == JobStatus.CANCELLED
    resumed = bulk_run_resume(run=paused)
    deliver(resumed)
    cancelled = bulk_run_cancel(run=resumed)
    assert (cancelled.status, cancelled.rows_done) == (BulkRunStatus.CANCELLED, 4)


@pytest.mark.django_db
def test_cancelling_a_running_run_asks_for_it(settings):
    settings.BULK_SLICE_SECONDS = 0
    make_products(4)
    run = start(REPRICE, UP_10)
    deliver(run)
    hold(run)
    cancelling = bulk_run_cancel(run=run)
    assert (cancelling.status, cancelling.requested) == (BulkRunStatus.RUNNING, "cancel")
    assert cancelling.finished_at is None


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["succeeded", "cancelled"])
def test_an_ended_run_cannot_be_cancelled(status):
    run = start(REPRICE, UP_10)
    BulkRun.objects.filter(pk=run.pk).update(status=status)
    if status == "cancelled":  # (cancelling a cancelled run again changes nothing)
        assert bulk_run_cancel(run=run).status == "cancelled"
        return
    error = _refused(Conflict, bulk_run_cancel, run=run)
    assert (error.status_code, error.code, error.details) == (
        409, "bulk_run_not_cancelled", {"status": status})


@pytest.mark.django_db
def test_a_failed_run_cancelled_ends_for_good_and_frees_its_csv_input():
    # given a failed CSV run (its input table is kept so that it could resume)
    product = make_products(1)[0]
    run = start("catalog.set_prices", csv=csv_bytes([(product.sku, "1.00")]))
    BulkRun.objects.filter(pk=run.pk).update(status=BulkRunStatus.FAILED, target=None)
    assert input_tables() == [run.input_table]

    # when it is cancelled, it ends and its input goes
    cancelled = bulk_run_cancel(run=run)
    assert cancelled.status == BulkRunStatus.CANCELLED and cancelled.input_table == ""
    assert input_tables() == []


# --- A run whose job will not come back ------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("request_", ["pause", "cancel"])
def test_a_running_run_whose_job_died_has_failed_when_paused_or_cancelled(settings, request_):
    # given a running run whose job's worker vanished on its last attempt: the orphan rescue
    # gave the job up (dead), so no delivery will reach a chunk boundary again
    settings.BULK_SLICE_SECONDS = 0
    products = make_products(4)
    run = start(REPRICE, UP_10)
    deliver(run)
    job = lifecycle.job_claim(job_id=str(run.job_id), worker="gone@host")
    Job.objects.filter(pk=job.pk).update(max_attempts=job.attempts)
    assert jobs_rescue_orphans(older_than=timedelta(0))["dead"] == 1
    assert fresh(run).status == BulkRunStatus.RUNNING

    # when an operator pauses or cancels it, it has already ended as failed (its job did),
    # rather than waiting for a boundary no worker will reach
    if request_ == "pause":
        with pytest.raises(Conflict) as refused:
            bulk_run_pause(run=run)
        assert refused.value.code == "bulk_run_not_paused"
        assert refused.value.details == {"status": BulkRunStatus.FAILED}
        # and a resume carries it on from its checkpoint with a new job
        settings.BULK_SLICE_SECONDS = 60
        run = run_to_end(bulk_run_resume(run=run))
        assert (run.status, run.rows_done, run.rows_changed) == (
            BulkRunStatus.SUCCEEDED, len(products), len(products))
        return
    steered = bulk_run_cancel(run=run)
    assert (steered.status, steered.requested) == (BulkRunStatus.CANCELLED, "")
    # and the target is free for the next run
    assert start(REPRICE, UP_10).status == BulkRunStatus.QUEUED


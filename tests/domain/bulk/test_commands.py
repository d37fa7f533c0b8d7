"""`manage.py bulk_update`: the same run as the API, and --wait following it to its end."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.core.management import CommandError
from django.db import connection

from domain.bulk.management.commands.bulk_update import progress_line
from domain.bulk.models import BulkRun, BulkRunStatus
from domain.catalog.models import Product
from domain.jobs.services import job_cancel
from tasks.bulk import run as bulk_task
from tests.conftest import run_command, wait_for
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_it_starts_a_run_and_says_how_to_follow_it():
    # given products in a category
    ProductFactory.create_batch(3, category="tea", price="2.00")

    # when the command starts a reprice without waiting
    out, _ = run_command("bulk_update", "catalog.reprice",
                         "--args", '{"category": "tea", "percent": 10}')

    # then a queued run with its job is stored, and nothing has changed yet
    run = BulkRun.objects.get()
    assert run.status == BulkRunStatus.QUEUED and run.job_id
    assert f"bulk run {run.pk} queued" in out
    assert f"/api/v1/bulk-operations/{run.pk}" in out
    assert set(Product.objects.values_list("price", flat=True)) == {Decimal("2.00")}


def test_refusals_are_command_errors_with_the_api_code():
    with pytest.raises(CommandError, match="unknown_operation"):
        run_command("bulk_update", "catalog.nope")
    with pytest.raises(CommandError, match="invalid_args"):
        run_command("bulk_update", "catalog.reprice", "--args", '{"category": "tea"}')
    with pytest.raises(CommandError, match="not JSON"):
        run_command("bulk_update", "catalog.reprice", "--args", "{")
    with pytest.raises(CommandError, match="csv_required"):
        run_command("bulk_update", "catalog.set_prices")
    assert not BulkRun.objects.exists()


def test_a_csv_file_is_read_and_its_bad_rows_are_listed(tmp_path):
    # given a CSV with a row naming no product
    product = ProductFactory(price="1.00")
    path = tmp_path / "prices.csv"
    path.write_text(f"sku,price\n{product.sku},3.50\nNO-SUCH,1.00\n")

    # then the run is refused with the line, and nothing is stored
    with pytest.raises(CommandError, match="invalid_rows") as refused:
        run_command("bulk_update", "catalog.set_prices", "--csv", str(path))
    assert '"line": 3' in str(refused.value)
    assert not BulkRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_wait_follows_the_run_to_its_end():
    # given products, and a worker stand-in that runs the job once the command has queued it
    ProductFactory.create_batch(5, category="tea", price="2.00")

    def work() -> None:
        try:
            run = wait_for(lambda: BulkRun.objects.filter(job__isnull=False).first(),
                           timeout=20)
            bulk_task.apply(args=[str(run.job_id)])
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()

    # when the command waits
    out, _ = run_command("bulk_update", "catalog.reprice", "--wait", "--chunk-size", "2",
                         "--fixed-chunk-size", "--args", '{"category": "tea", "percent": 10}')
    worker.join(timeout=30)

    # then it printed progress lines and the outcome, and the rows changed
    assert "rows" in out and "succeeded: 5 rows changed of 5 visited in 3 chunks" in out
    assert set(Product.objects.values_list("price", flat=True)) == {Decimal("2.20")}


@pytest.mark.django_db(transaction=True)
def test_wait_ends_when_the_runs_job_ended_without_it():
    # given a run followed with --wait (in a thread of its own: before the fix it never
    # ended), whose job an operator then cancels through the jobs API's service
    ProductFactory.create_batch(3, category="tea", price="2.00")
    ended: list = []

    def follow() -> None:
        try:
            run_command("bulk_update", "catalog.reprice", "--wait",
                        "--args", '{"category": "tea", "percent": 10}')
            ended.append("returned")
        except CommandError as exc:
            ended.append(str(exc))
        finally:
            connection.close()

    waiting = threading.Thread(target=follow, daemon=True)
    waiting.start()
    run = wait_for(lambda: BulkRun.objects.filter(job__isnull=False).first(), timeout=20)
    job_cancel(job=run.job)

    # then the command sees the run end with its job (cancelled) and says so
    waiting.join(timeout=30)
    assert not waiting.is_alive(), "bulk_update --wait still following a run whose job ended"
    assert ended and f"bulk run {run.pk} cancelled" in ended[0], ended
    assert BulkRun.objects.get().status == BulkRunStatus.CANCELLED


def test_the_progress_line_shows_share_rate_and_eta():
    run = BulkRun(operation="catalog.reprice", status=BulkRunStatus.RUNNING, rows_matched=1000,
                  rows_done=450, elapsed_seconds=1.5, chunk_size=100, target_chunk_seconds=0.5,
                  pause_seconds=0, lock_timeout_seconds=2)
    line = progress_line(run)
    assert "45.0%" in line and "450/1,000 rows" in line and "300 rows/s" in line
    assert "ETA 2s" in line and line.endswith("running")

"""Helpers for the bulk-run tests (tests/domain/bulk/, the operations' tests, tests/flows/):
rows whose primary keys sort as they were made, a run started through the service, and its
job delivered in process: the real task (claim, body, the job's bookkeeping), no worker."""

from __future__ import annotations

import io
import uuid
from decimal import Decimal
from typing import Any

from django.db import connection

from domain.bulk.models import BulkRun
from domain.bulk.services import Throttle, bulk_run_start
from domain.catalog.models import Product
from domain.customers.models import Customer
from domain.jobs import lifecycle
from tasks.bulk import run as bulk_task
from tests.factories import CustomerFactory, ProductFactory

_serial = iter(range(1, 10**9))


def ordered_id() -> uuid.UUID:
    """A primary key greater than every one handed out before (keyset chunks visit rows in
    primary-key order, so a test knows which rows each chunk holds)."""
    return uuid.UUID(int=next(_serial))


def make_products(count: int, *, category: str = "coffee", price: str = "10.00",
                  **fields: Any) -> list[Product]:
    """`count` products in primary-key order."""
    return [ProductFactory(id=ordered_id(), category=category, price=price, **fields)
            for _ in range(count)]


def make_customers(count: int, **fields: Any) -> list[Customer]:
    return [CustomerFactory(id=ordered_id(), **fields) for _ in range(count)]


def start(operation: str, args: dict | None = None, *, dry_run: bool = False,
          chunk_size: int = 2, adaptive: bool = False, pause_seconds: float = 0.0,
          lock_timeout_seconds: float | None = None, target_chunk_seconds: float | None = None,
          csv: bytes | None = None, api_key=None) -> BulkRun:
    """Start a run through the service: small fixed chunks unless told otherwise."""
    throttle = Throttle(chunk_size=chunk_size, adaptive=adaptive, pause_seconds=pause_seconds,
                        lock_timeout_seconds=lock_timeout_seconds,
                        target_chunk_seconds=target_chunk_seconds)
    return bulk_run_start(operation=operation, args=args, dry_run=dry_run, throttle=throttle,
                          csv_stream=None if csv is None else io.BytesIO(csv), api_key=api_key)


def deliver(run: BulkRun | None = None, *, job_id: Any = None) -> dict:
    """Deliver the run's current job (or the job given) to the real task, in this process;
    answers the task's counts (claimed, succeeded, retrying, dead, deferred)."""
    if job_id is None:
        job_id = BulkRun.objects.values_list("job_id", flat=True).get(pk=run.pk)
    return bulk_task.apply(args=[str(job_id)]).get()


def hold(run: BulkRun):
    """A worker has taken the run's job (claimed it, as at the start of a slice): a pause or
    cancel now waits for the run's next chunk boundary. Answers the claimed job for `hand_back`."""
    return lifecycle.job_claim(job_id=str(fresh(run).job_id), worker="holding@test")


def hand_back(job) -> None:
    """That worker's slice ends (the job handed back, as the runner's `Deferred` does): the
    next `deliver` is the run's next boundary."""
    assert lifecycle.jobs_defer(jobs=[job], countdown=0, via_broker=False)


def run_to_end(run: BulkRun, deliveries: int = 100) -> BulkRun:
    """Deliver the run's job until it is no longer handed back at the end of a time slice
    (BULK_SLICE_SECONDS): the run has ended, stopped, or its job failed."""
    for _ in range(deliveries):
        deliver(run)
        run = fresh(run)
        if run.job.status != "queued":
            return run
    raise AssertionError(f"run {run.pk} still going after {deliveries} deliveries")


def fresh(run: BulkRun) -> BulkRun:
    return BulkRun.objects.select_related("job").get(pk=run.pk)


def prices(products: list[Product]) -> list[Decimal]:
    by_id = dict(Product.objects.filter(pk__in=[p.pk for p in products])
                 .values_list("pk", "price"))
    return [by_id[p.pk] for p in products]


def input_tables() -> list[str]:
    """The CSV input tables in the database (one per CSV run still holding its rows)."""
    return sorted(t for t in connection.introspection.table_names()
                  if t.startswith("bulk_input_"))


def csv_bytes(rows: list[tuple[str, str]], header: str = "sku,price") -> bytes:
    return (header + "\n" + "".join(f"{sku},{price}\n" for sku, price in rows)).encode()

"""Bulk runs end to end: API → outbox → Redis → a real worker → the database and the cache.

(a) No stale read after success: once a run says `succeeded`, no cached copy from before it
is served, product detail or listing. (b) Two runs on the same rows never interleave: the
second is refused (409, naming the first) while the first holds them, and accepted after.
(c) Flower sees the run move: a task-progress event per committed chunk."""

import contextlib
import threading
import time
from decimal import Decimal

import pytest
from django.urls import reverse

from domain.events.models import Event
from domain.jobs.models import Job, JobStatus
from tests.bulk_utils import make_products, prices
from tests.conftest import assert_error, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

LIST = reverse("bulk-run-list")


def _reprice(percent: float, **extra) -> dict:
    return {"operation": "catalog.reprice", "args": {"category": "coffee", "percent": percent},
            "throttle": {"adaptive": False}, **extra}


def _ended(client, run_id: str) -> dict | None:
    body = client.get(reverse("bulk-run-detail", args=[run_id])).json()
    return body if body["status"] in ("succeeded", "failed", "cancelled") else None


def test_no_cached_price_from_before_a_run_is_served_once_it_has_succeeded(
        celery_worker_thread, client_all):
    # given products whose details and category listing are cached
    products = make_products(6, price="10.00")
    details = [reverse("product-detail", args=[p.pk]) for p in products]
    listing = reverse("product-list") + "?category=coffee"
    for url in (*details, listing):
        assert client_all.get(url)["X-Cache"] == "miss"
        assert client_all.get(url)["X-Cache"] == "hit"

    # when a +10% reprice runs on the worker, chunk by chunk, while clients keep reading
    # (and caching) the products it is changing
    response = client_all.post(LIST, _reprice(10, chunk_size=1, throttle={
        "adaptive": False, "pause_seconds": 0.05}), format="json")
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]

    def read_until_ended():
        for url in (*details, listing):
            assert client_all.get(url).status_code == 200
        return _ended(client_all, run_id)

    run = wait_for(read_until_ended, timeout=60, message="the run to end")

    # then, as soon as it says succeeded, every read serves the new prices
    assert (run["status"], run["rows_changed"]) == ("succeeded", 6)
    for url in details:
        assert client_all.get(url).json()["price"] == "11.00"
    assert [p["price"] for p in client_all.get(listing).json()["results"]] == ["11.00"] * 6
    assert prices(products) == [Decimal("11.00")] * 6

    # and its event's cache invalidation job runs on the worker too, after which reads are
    # cached again, with the new prices
    event = Event.objects.get(type="catalog.bulk_updated")
    [job] = event.jobs.all()
    done = wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.SUCCEEDED).first(),
                    message="the cache invalidation job")
    assert done.kind == "cache_invalidation"
    client_all.get(details[0])
    second = client_all.get(details[0])
    assert (second["X-Cache"], second.json()["price"]) == ("hit", "11.00")


def test_a_second_run_on_the_same_rows_waits_for_the_first_to_end(celery_worker_thread,
                                                                   client_all):
    # given a slow +10% reprice going on the worker (a pause of 0.3 s after each of 5 chunks)
    products = make_products(5, price="10.00")
    first = client_all.post(LIST, _reprice(10, chunk_size=1, throttle={
        "adaptive": False, "pause_seconds": 0.3}), format="json")
    assert first.status_code == 202, first.content
    first_id = first.json()["id"]

    # when a second run on the same rows is started meanwhile
    refused = client_all.post(LIST, {"operation": "catalog.set_status", "args": {
        "status": "inactive", "category": "coffee"}}, format="json")

    # then it is refused with a 409 naming the first, which holds the rows
    error = assert_error(refused, 409, "bulk_target_busy")
    assert error["details"]["run"] == first_id
    assert error["details"]["status"] in ("queued", "running")
    assert error["details"]["target"] == "catalog.product"

    # when the first has ended, a second +10% reprice is started
    assert wait_for(lambda: _ended(client_all, first_id), timeout=60,
                    message="the first run")["status"] == "succeeded"
    second = client_all.post(LIST, _reprice(10), format="json")

    # then it is accepted, and runs after the first: the two never interleaved
    assert second.status_code == 202, second.content
    assert wait_for(lambda: _ended(client_all, second.json()["id"]), timeout=60,
                    message="the second run")["status"] == "succeeded"
    assert prices(products) == [Decimal("12.10")] * 5


def test_flower_sees_a_run_move_as_its_chunks_commit(celery_worker_thread, client_all):
    # given a listener on the broker's task events, as Flower listens
    from config.celery import app

    seen: list[dict] = []
    ready = threading.Event()
    receivers: list = []

    def listen() -> None:
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(connection, handlers={
                "task-progress": seen.append, "task-succeeded": seen.append})
            receivers.append(receiver)
            ready.set()
            with contextlib.suppress(TimeoutError, OSError):
                receiver.capture(limit=None, timeout=20, wakeup=False)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10)
    time.sleep(0.5)  # (the receiver's subscription is made inside capture)

    # when a run of three fixed chunks goes through a real worker
    make_products(6, price="10.00")
    run = client_all.post(LIST, {**_reprice(10), "chunk_size": 2}, format="json").json()
    wait_for(lambda: _ended(client_all, run["id"]), timeout=30)
    wait_for(lambda: any(e["type"] == "task-succeeded" for e in seen), timeout=10)

    # then each chunk sent a task-progress event (Flower shows it as the state PROGRESS with
    # these fields), counting rows up to the total
    receivers[0].should_stop = True
    listener.join(10)
    progress = [(e["done"], e["total"]) for e in seen if e["type"] == "task-progress"]
    assert progress == [(2, 6), (4, 6), (6, 6)]

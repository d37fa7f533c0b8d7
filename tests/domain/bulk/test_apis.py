"""The bulk operations API, through real keys: start (JSON and CSV), read, list, steer, and
the operation types; scopes, and runs of other keys."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from domain.bulk.models import BulkRun, BulkRunStatus
from domain.jobs.models import Job
from tests.bulk_utils import (
    csv_bytes,
    deliver,
    hand_back,
    hold,
    make_products,
    prices,
    run_to_end,
)
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

RUN_FIELDS = {
    "id", "operation", "args", "dry_run", "status", "requested", "rows_matched", "rows_done",
    "rows_changed", "chunks", "checkpoint", "elapsed_seconds", "rate", "eta_seconds",
    "last_error", "result", "throttle", "target", "input_rows", "job", "created_at",
    "started_at", "finished_at", "updated_at", "url",
}
LIST = reverse("bulk-run-list")
REPRICE = {"operation": "catalog.reprice", "args": {"category": "coffee", "percent": 10}}


@pytest.fixture
def writer(make_client):
    return make_client(["bulk:write"], name="writer")


def _detail(run_id) -> str:
    return reverse("bulk-run-detail", args=[run_id])


def _steer(client, run_id, action: str):
    return client.post(reverse(f"bulk-run-{action}", args=[run_id]))


def _post_csv(client, body: bytes, query: str = "operation=catalog.set_prices"):
    return client.post(f"{LIST}?{query}", data=body, content_type="text/csv")


# --- POST: JSON ------------------------------------------------------------------------------

def test_a_json_start_answers_202_with_the_run_and_its_job(writer):
    # when a client starts a reprice with its own chunk size and throttle
    response = writer.post(LIST, {**REPRICE, "chunk_size": 50, "throttle": {
        "pause_seconds": 0.5, "adaptive": False, "lock_timeout_seconds": 1.5}}, format="json")

    # then the run is accepted, queued, with every documented field
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == RUN_FIELDS
    assert (body["operation"], body["args"], body["dry_run"], body["status"]) == (
        "catalog.reprice", {"category": "coffee", "percent": 10}, False, "queued")
    assert (body["requested"], body["rows_matched"], body["rows_done"], body["rows_changed"]) == (
        None, None, 0, 0)
    assert body["chunks"] == {"done": 0, "total": None, "size": 50}
    assert body["checkpoint"] == {"last_key": None, "rows_done": 0}
    assert (body["elapsed_seconds"], body["rate"], body["eta_seconds"]) == (0.0, None, None)
    assert (body["last_error"], body["result"], body["input_rows"]) == (None, None, None)
    assert body["throttle"] == {"adaptive": False, "target_chunk_seconds": 0.5,
                                "pause_seconds": 0.5, "lock_timeout_seconds": 1.5,
                                "lock_retries": 0}
    assert body["target"] == "catalog.product"
    assert body["url"].endswith(_detail(body["id"]))
    assert (body["started_at"], body["finished_at"]) == (None, None) and body["created_at"]
    # and its job is a queued bulk_run job of the caller's key
    job = body["job"]
    assert set(job) == {"id", "status", "progress", "url"}
    assert (job["status"], job["progress"]) == ("queued", {"done": 0, "total": None})
    assert job["url"].endswith(reverse("job-detail", args=[job["id"]]))
    row = Job.objects.get(pk=job["id"])
    assert (row.kind, row.params, row.api_key_id) == (
        "bulk_run", {"run_id": body["id"]}, writer.api_key.pk)


def test_a_json_start_of_an_operation_taking_rows_says_how_to_send_them(writer):
    response = writer.post(LIST, {"operation": "catalog.set_prices"}, format="json")
    error = assert_error(response, 422, "csv_required")
    assert error["details"]["columns"] == ["sku", "price"]


@pytest.mark.parametrize(("body", "code"), [
    ({"operation": "catalog.truncate", "args": {}}, "unknown_operation"),
    ({"operation": "catalog.reprice", "args": {"category": "coffee"}}, "invalid_args"),
    ({"operation": "catalog.reprice", "args": {"category": "coffee", "percent": 10,
                                               "extra": 1}}, "invalid_args"),
    ({"args": {}}, None),                                   # no operation
    ({**REPRICE, "chunk_size": 0}, None),
    ({**REPRICE, "throttle": {"pause_seconds": -1}}, None),
])
def test_a_start_that_fails_validation_is_422_and_stores_nothing(writer, body, code):
    response = writer.post(LIST, body, format="json")
    assert_error(response, 422, code)
    assert not BulkRun.objects.exists() and not Job.objects.exists()


def test_a_start_on_rows_another_run_holds_is_409_naming_it(writer):
    first = writer.post(LIST, REPRICE, format="json").json()
    response = writer.post(LIST, {"operation": "catalog.set_status",
                                  "args": {"status": "inactive", "category": "tea"}},
                           format="json")
    error = assert_error(response, 409, "bulk_target_busy")
    assert (error["details"]["run"], error["details"]["status"]) == (first["id"], "queued")
    assert first["id"] in error["message"] or "catalog.product" in error["message"]


def test_a_dry_run_is_accepted_beside_a_real_one(writer):
    writer.post(LIST, REPRICE, format="json")
    response = writer.post(LIST, {**REPRICE, "dry_run": True}, format="json")
    assert response.status_code == 202, response.content
    assert (response.json()["dry_run"], response.json()["target"]) == (True, None)


# --- POST: CSV -------------------------------------------------------------------------------

def test_a_csv_start_takes_the_rows_and_the_run_sets_the_prices(writer):
    # given two products
    first, second = make_products(2)

    # when a CSV of their new prices is posted
    response = _post_csv(writer, csv_bytes([(first.sku, "12.50"), (second.sku, "7.00")]),
                         "operation=catalog.set_prices&chunk_size=1&pause_seconds=0")

    # then the run is accepted with its rows counted, and, once run, sets the prices
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["operation"], body["args"], body["input_rows"], body["chunks"]["size"]) == (
        "catalog.set_prices", {}, 2, 1)
    run_to_end(BulkRun(pk=body["id"]))
    assert prices([first, second]) == [Decimal("12.50"), Decimal("7.00")]
    done = writer.get(_detail(body["id"])).json()
    assert (done["status"], done["rows_changed"], done["chunks"]["done"]) == ("succeeded", 2, 2)


def test_a_csv_dry_run_validates_every_row_and_changes_nothing(writer):
    [product] = make_products(1)
    response = _post_csv(writer, csv_bytes([(product.sku, "99.00")]),
                         "operation=catalog.set_prices&dry_run=true")
    assert response.status_code == 202, response.content
    run_to_end(BulkRun(pk=response.json()["id"]))
    body = writer.get(_detail(response.json()["id"])).json()
    assert (body["dry_run"], body["status"], body["result"]) == (
        True, "succeeded", {"would_change": 1})
    assert prices([product]) == [Decimal("10.00")]


def test_a_csv_with_bad_rows_is_422_with_their_lines(writer):
    [product] = make_products(1)
    response = _post_csv(writer, csv_bytes([(product.sku, "1.00"), ("NOPE", "2.00")]))
    error = assert_error(response, 422, "invalid_rows")
    assert [(e["line"], e["column"]) for e in error["details"]["errors"]] == [(3, "sku")]
    assert not BulkRun.objects.exists()


@pytest.mark.parametrize(("query", "code", "status"), [
    ("", None, 422),                                      # no operation
    ("operation=catalog.reprice", "csv_not_accepted", 422),
    ("operation=catalog.nope", "unknown_operation", 422),
    ("operation=catalog.set_prices&chunk_size=0", None, 422),
])
def test_a_csv_start_that_names_no_operation_taking_rows_is_refused(writer, query, code,
                                                                    status):
    [product] = make_products(1)
    response = _post_csv(writer, csv_bytes([(product.sku, "1.00")]), query)
    assert_error(response, status, code)
    assert not BulkRun.objects.exists()


def test_a_csv_over_the_size_limit_is_413(writer, settings):
    [product] = make_products(1)
    settings.BULK_CSV_MAX_BYTES = 100
    response = _post_csv(writer, csv_bytes([(product.sku, "1.00")] * 50))
    assert_error(response, 413)
    assert not BulkRun.objects.exists()


# --- GET -------------------------------------------------------------------------------------

def test_the_detail_of_a_run_under_way_shows_its_progress(writer, settings):
    # given a run of seven rows in chunks of three, one chunk done (its slice ended)
    settings.BULK_SLICE_SECONDS = 0
    products = make_products(7)
    started = writer.post(LIST, {**REPRICE, "chunk_size": 3,
                                 "throttle": {"adaptive": False}}, format="json").json()
    deliver(BulkRun(pk=started["id"]))

    # when it is read
    body = writer.get(_detail(started["id"])).json()

    # then it says where it is, how fast it goes and how long it has left
    assert (body["status"], body["rows_matched"], body["rows_done"], body["rows_changed"]) == (
        "running", 7, 3, 3)
    assert body["chunks"] == {"done": 1, "total": 3, "size": 3}
    assert body["checkpoint"] == {"last_key": str(products[2].pk), "rows_done": 3}
    assert body["elapsed_seconds"] > 0 and body["rate"] > 0
    assert body["eta_seconds"] == pytest.approx(4 / body["rate"], rel=0.01, abs=0.1)
    assert body["started_at"] and body["finished_at"] is None and body["last_error"] is None
    assert (body["job"]["status"], body["job"]["progress"]) == (
        "queued", {"done": 3, "total": 7})


def test_the_detail_of_a_run_that_succeeded_shows_its_totals(writer):
    make_products(5)
    started = writer.post(LIST, {**REPRICE, "chunk_size": 2,
                                 "throttle": {"adaptive": False}}, format="json").json()
    run_to_end(BulkRun(pk=started["id"]))

    body = writer.get(_detail(started["id"])).json()

    assert (body["status"], body["rows_matched"], body["rows_done"], body["rows_changed"]) == (
        "succeeded", 5, 5, 5)
    assert body["chunks"] == {"done": 3, "total": 3, "size": 2}
    assert body["eta_seconds"] is None and body["finished_at"]
    assert body["result"]["event_type"] == "catalog.bulk_updated"
    assert body["result"]["payload"]["categories"] == ["coffee"]
    assert (body["job"]["status"], body["job"]["progress"]) == (
        "succeeded", {"done": 5, "total": 5})


@pytest.mark.postgres  # (the overflow is numeric(12, 2)'s: SQLite stores any number)
def test_the_detail_shows_the_last_error_of_a_failed_run(writer):
    make_products(1, price="9999999999.99")
    started = writer.post(LIST, REPRICE, format="json").json()
    run_to_end(BulkRun(pk=started["id"]))
    body = writer.get(_detail(started["id"])).json()
    assert body["status"] == "failed" and body["job"]["status"] == "dead"
    assert body["last_error"]["code"] == "DataError"
    assert "numeric field overflow" in body["last_error"]["message"]


def test_the_list_shows_the_keys_runs_newest_first_and_filters_them(writer, make_client):
    # given runs of this key (one cancelled, one queued, a dry run) and one of another key
    other = make_client(["bulk:write"], name="other")
    cancelled = writer.post(LIST, REPRICE, format="json").json()
    _steer(writer, cancelled["id"], "cancel")
    queued = writer.post(LIST, REPRICE, format="json").json()
    dry = writer.post(LIST, {"operation": "customers.deactivate_inactive",
                             "args": {"days": 30}, "dry_run": True}, format="json").json()
    other.post(LIST, {"operation": "customers.deactivate_inactive", "args": {"days": 30}},
               format="json")

    def ids(query=""):
        response = writer.get(f"{LIST}{query}")
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    # then the key sees its own, newest first, and the filters narrow them
    assert ids() == [dry["id"], queued["id"], cancelled["id"]]
    assert ids("?status=cancelled") == [cancelled["id"]]
    assert ids("?status=queued&operation=catalog.reprice") == [queued["id"]]
    assert ids("?operation=customers.deactivate_inactive") == [dry["id"]]
    assert ids("?operation=catalog.set_prices") == []
    page = writer.get(f"{LIST}?limit=2").json()
    assert len(page["results"]) == 2 and page["next"]
    assert_error(writer.get(f"{LIST}?status=exploded"), 422)
    # and an admin key sees every key's runs
    assert len(make_client(["admin", "bulk:read"]).get(LIST).json()["results"]) == 4


# --- Pause, resume, cancel ---------------------------------------------------------------------

def test_pause_resume_and_cancel_answer_202_with_the_run_or_409(writer):
    run = writer.post(LIST, REPRICE, format="json").json()
    first_job = run["job"]["id"]

    paused = _steer(writer, run["id"], "pause")
    assert paused.status_code == 202, paused.content
    assert (paused.json()["status"], paused.json()["job"]["status"]) == ("paused", "cancelled")

    resumed = _steer(writer, run["id"], "resume")
    assert resumed.status_code == 202, resumed.content
    assert resumed.json()["status"] == "queued"
    assert resumed.json()["job"]["id"] != first_job
    assert_error(_steer(writer, run["id"], "resume"), 409, "bulk_run_not_resumed")

    cancelled = _steer(writer, run["id"], "cancel")
    assert cancelled.status_code == 202, cancelled.content
    assert (cancelled.json()["status"], cancelled.json()["finished_at"] is not None) == (
        "cancelled", True)
    assert_error(_steer(writer, run["id"], "pause"), 409, "bulk_run_not_paused")
    assert_error(_steer(writer, run["id"], "resume"), 409, "bulk_run_not_resumed")
    assert _steer(writer, run["id"], "cancel").status_code == 202  # (already: unchanged)


def test_a_pause_of_a_running_run_is_asked_for(writer, settings):
    settings.BULK_SLICE_SECONDS = 0
    make_products(4)
    run = writer.post(LIST, {**REPRICE, "chunk_size": 2}, format="json").json()
    deliver(BulkRun(pk=run["id"]))
    held = hold(BulkRun(pk=run["id"]))  # a worker has the run's job
    body = _steer(writer, run["id"], "pause").json()
    assert (body["status"], body["requested"]) == ("running", "pause")
    hand_back(held)
    deliver(BulkRun(pk=run["id"]))
    body = writer.get(_detail(run["id"])).json()
    assert (body["status"], body["requested"], body["rows_done"]) == ("paused", None, 2)


def test_a_succeeded_run_cannot_be_steered(writer):
    make_products(1)
    run = writer.post(LIST, REPRICE, format="json").json()
    run_to_end(BulkRun(pk=run["id"]))
    assert_error(_steer(writer, run["id"], "pause"), 409, "bulk_run_not_paused")
    assert_error(_steer(writer, run["id"], "cancel"), 409, "bulk_run_not_cancelled")
    assert BulkRun.objects.get(pk=run["id"]).status == BulkRunStatus.SUCCEEDED


# --- Scopes and other keys ---------------------------------------------------------------------

def test_reading_needs_a_bulk_scope_and_writing_bulk_write(writer, make_client):
    run = writer.post(LIST, REPRICE, format="json").json()
    reader = make_client(["bulk:read"], name="reader")
    stranger = make_client(["products:read", "products:write", "jobs:write"], name="stranger")
    admin_reader = make_client(["admin", "bulk:read"], name="admin-reader")

    # a bulk:read key reads but starts and steers nothing
    assert reader.get(LIST).status_code == 200
    assert reader.get(reverse("bulk-operation-types")).status_code == 200
    assert_error(reader.post(LIST, REPRICE, format="json"), 403)
    assert_error(_post_csv(reader, b"sku,price\nA,1.00\n"), 403)
    for action in ("pause", "resume", "cancel"):
        assert_error(_steer(reader, run["id"], action), 403)
    # (an admin key reads every key's runs)
    assert admin_reader.get(_detail(run["id"])).status_code == 200
    # a key with no bulk scope does nothing here
    for response in (stranger.get(LIST), stranger.get(_detail(run["id"])),
                     stranger.get(reverse("bulk-operation-types")),
                     stranger.post(LIST, REPRICE, format="json")):
        assert_error(response, 403)
    # and without a key, nothing at all
    anonymous = writer.__class__()
    assert anonymous.get(LIST).status_code == 401
    assert BulkRun.objects.count() == 1


def test_another_keys_run_is_not_found(writer, make_client):
    run = writer.post(LIST, REPRICE, format="json").json()
    other = make_client(["bulk:write"], name="other")
    assert_error(other.get(_detail(run["id"])), 404, "not_found")
    for action in ("pause", "resume", "cancel"):
        assert_error(_steer(other, run["id"], action), 404, "not_found")
    assert other.get(LIST).json()["results"] == []
    assert BulkRun.objects.get(pk=run["id"]).status == BulkRunStatus.QUEUED  # untouched
    assert_error(writer.get(_detail(uuid.uuid4())), 404, "not_found")


# --- Operation types ---------------------------------------------------------------------------

def test_the_operation_types_list_every_registered_operation(make_client):
    response = make_client(["bulk:read"]).get(reverse("bulk-operation-types"))
    assert response.status_code == 200
    types = {t["name"]: t for t in response.json()}
    assert set(types) == {"catalog.reprice", "catalog.set_prices", "catalog.set_status",
                          "customers.deactivate_inactive"}
    for entry in types.values():
        assert set(entry) == {"name", "description", "args_schema", "csv_columns",
                              "event_type", "example_args"}
        assert entry["description"] and entry["args_schema"]["type"] == "object"
    assert types["catalog.set_prices"]["csv_columns"] == ["sku", "price"]
    assert types["catalog.reprice"]["csv_columns"] is None
    assert types["catalog.reprice"]["args_schema"]["required"] == ["category", "percent"]
    assert {t["event_type"] for t in types.values()} == {
        "catalog.bulk_updated", "customers.deactivated"}
    # and each example starts a run (as a dry run: it holds nothing)
    writer = make_client(["bulk:write"], name="writer")
    for name, entry in types.items():
        if entry["csv_columns"] is None:
            response = writer.post(LIST, {"operation": name, "args": entry["example_args"],
                                          "dry_run": True}, format="json")
            assert response.status_code == 202, (name, response.content)

"""insert_rows (unnest arrays on PostgreSQL) stores exactly what bulk_create stores, and falls
back to bulk_create where a plain INSERT would store something else."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection

from domain.access.models import ApiKey
from domain.access.services import api_key_create
from domain.common.fastpaths import insert_rows, needs_pre_save
from domain.events.models import Event
from domain.jobs.models import Job


def _pair(api_key: ApiKey) -> tuple[Event, Job]:
    when = datetime(2026, 11, 21, 8, 30, 15, 123456, tzinfo=UTC)
    event = Event(type="demo.ping", occurred_at=when, created_at=when, api_key=api_key,
                  payload={"message": "é \"quoted\" \\ back", "n": [1, 2.5, None, True],
                           "deep": {"a": {"b": []}}},
                  idempotency_key="key-1", request_hash="ab" * 32, correlation_id="corr")
    job = Job(event=event, kind="noop", handler="demo.noop", params={"keys": ["a"]},
              max_attempts=5, created_at=when, run_at=when, api_key=api_key,
              result=None, error={"type": "X", "message": "y"}, correlation_id="corr")
    return event, job


def _row(model, pk) -> dict:
    row = model.objects.filter(pk=pk).values().get()
    for name in ("id", "event_id", "idempotency_key"):
        row.pop(name, None)
    return row


def _copy(obj):
    twin = copy.copy(obj)
    twin._state = copy.copy(obj._state)
    twin.pk = uuid.uuid4()
    return twin


@pytest.mark.postgres  # elsewhere insert_rows is bulk_create: it would compare it with itself
@pytest.mark.django_db
def test_insert_rows_stores_what_bulk_create_stores():
    # given an event and a job with every kind of field set (and a null JSON field)
    api_key, _ = api_key_create(name="bulk", scopes=["events:publish"])
    event, job = _pair(api_key)
    twin_event, twin_job = _copy(event), _copy(job)
    twin_event.idempotency_key = "key-2"
    twin_job.event = twin_event

    # when one pair goes through insert_rows and its twin through bulk_create
    insert_rows(Event, [event])
    insert_rows(Job, [job])
    Event.objects.bulk_create([twin_event])
    Job.objects.bulk_create([twin_job])

    # then the stored rows are equal, column for column
    assert _row(Event, event.pk) == _row(Event, twin_event.pk)
    assert _row(Job, job.pk) == _row(Job, twin_job.pk)
    stored = Job.objects.get(pk=job.pk)
    assert stored.result is None and stored.error == {"type": "X", "message": "y"}
    assert Event.objects.get(pk=event.pk).payload == event.payload
    # and the objects know they are saved, as after bulk_create
    assert not event._state.adding and not job._state.adding


@pytest.mark.django_db
def test_insert_rows_of_nothing_does_nothing():
    insert_rows(Event, [])
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_insert_rows_is_one_statement_on_postgresql(django_assert_num_queries):
    # given 300 events
    events = [_pair(None)[0] for _ in range(300)]
    for n, event in enumerate(events):
        event.idempotency_key = f"k{n}"
    # then they go in one statement on PostgreSQL (bulk_create's batching elsewhere)
    expected = 1 if connection.vendor == "postgresql" else None
    if expected is None:
        insert_rows(Event, events)
    else:
        with django_assert_num_queries(expected):
            insert_rows(Event, events)
    assert Event.objects.count() == 300


@pytest.mark.django_db
def test_insert_rows_falls_back_for_fields_computed_when_saved():
    # given a model whose fields compute their value at save time (auto_now_add, auto_now):
    # a plain INSERT would skip them and store NULL
    from django_celery_results.models import TaskResult

    assert [f.name for f in TaskResult._meta.concrete_fields if needs_pre_save(f)] == [
        "date_created", "date_done"]
    results = [TaskResult(task_id=f"task-{n}", status="SUCCESS") for n in range(3)]

    # when they are inserted
    insert_rows(TaskResult, results)

    # then the computed values were set, as bulk_create sets them
    stored = TaskResult.objects.filter(task_id__startswith="task-")
    assert stored.count() == 3
    assert all(r.date_created is not None and r.date_done is not None for r in stored)


def test_fields_that_need_no_pre_save_take_the_fast_path():
    # the models the fast path exists for convert every field
    assert not [f for f in Event._meta.concrete_fields if needs_pre_save(f)]
    assert not [f for f in Job._meta.concrete_fields if needs_pre_save(f)]


@pytest.mark.postgres  # the fast path's own cast; bulk_create refuses it on PostgreSQL too
@pytest.mark.django_db
def test_a_value_longer_than_its_column_is_refused_not_cut():
    # given a job whose kind is longer than the column (a varchar(…))
    _, job = _pair(None)
    job.event = None
    job.kind = "k" * (Job._meta.get_field("kind").max_length + 1)

    # when it goes through insert_rows, then the database refuses it, as it refuses
    # bulk_create's INSERT; nothing is stored cut to the column's length
    from django.db import DataError, transaction

    with pytest.raises(DataError, match="too long"), transaction.atomic():
        insert_rows(Job, [job])
    with pytest.raises(DataError, match="too long"), transaction.atomic():
        Job.objects.bulk_create([_copy(job)])
    assert not Job.objects.exists()

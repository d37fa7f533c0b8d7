"""InstantField: a client's date-time must fall within what can be stored once in UTC."""

from __future__ import annotations

import pytest
from django.urls import reverse

from domain.common.fields import INSTANT_RANGE
from domain.events.models import Event
from domain.jobs.models import Job
from tests.conftest import assert_error

# Valid RFC 3339, but before year 1 / after year 9999 once converted to UTC.
BEFORE_YEAR_1 = "0001-01-01T01:00:01+02:01"
AFTER_YEAR_9999 = "9999-12-31T23:30:00-01:00"
MESSAGE = f"This time is outside what can be stored: {INSTANT_RANGE}."


@pytest.mark.django_db
@pytest.mark.parametrize("when", [BEFORE_YEAR_1, AFTER_YEAR_9999])
def test_event_occurred_outside_the_range_is_422_naming_the_range_and_stores_nothing(
        client_all, when):
    # when an event, alone and in a batch, says it occurred outside years 1-9999 in UTC
    event = {"type": "demo.ping", "payload": {"message": "hi"}, "occurred_at": when}
    single = client_all.post(reverse("event-publish"), event, format="json")
    batch = client_all.post(reverse("event-batch-publish"), {"events": [event]}, format="json")

    # then both are 422 under the field, with the range in the message, and nothing is stored
    assert assert_error(single, 422, "validation_failed")["details"] == {"occurred_at": [MESSAGE]}
    assert assert_error(batch, 422, "validation_failed")["details"] == {
        "events": {"0": {"occurred_at": [MESSAGE]}}}
    assert Event.objects.count() == 0
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_job_run_at_outside_the_range_is_422_and_the_edges_inside_it_are_taken(client_all):
    # when a job is asked to run after year 9999 in UTC
    late = client_all.post(reverse("job-list"), {"kind": "noop", "run_at": AFTER_YEAR_9999},
                           format="json")

    # then it is refused under run_at, and no job exists
    assert assert_error(late, 422, "validation_failed")["details"] == {"run_at": [MESSAGE]}
    assert Job.objects.count() == 0

    # and the last instant that is still in range is accepted as given
    edge = client_all.post(reverse("job-list"), {"kind": "noop",
                                                 "run_at": "9999-12-31T23:59:59Z"}, format="json")
    assert edge.status_code == 202, edge.content
    assert edge.json()["run_at"].startswith("9999-12-31T23:59:59")


@pytest.mark.django_db
def test_schema_describes_the_range_on_every_date_time_a_client_sends(client_all):
    schemas = client_all.get("/api/schema?format=json").json()["components"]["schemas"]
    sent = [(name, field) for name in ("NoopJobInput", "DemoPingEventInput",
                                       "JobBulkRetryInputRequest")
            for field in ("run_at", "occurred_at", "since", "until")
            if field in schemas[name]["properties"]]
    assert len(sent) == 4
    for name, field in sent:
        spec = schemas[name]["properties"][field]
        assert spec["format"] == "date-time"
        assert INSTANT_RANGE in spec["description"], (name, field)


@pytest.mark.django_db
def test_a_number_where_a_string_belongs_is_refused(client_all):
    # given a filter the schema types as a string, when a JSON number is sent for it
    response = client_all.post("/api/v1/jobs/retry", {"status": "dead", "event_type": -2202235},
                               format="json")

    # then it is 422 under that field, not a filter by "-2202235" (the fuzzer's find)
    assert response.status_code == 422, response.content
    assert "event_type" in response.json()["error"]["details"]

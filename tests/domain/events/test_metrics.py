"""Events accepted, by type: counted once each after their commit, single or batch; an
idempotent replay and a rolled-back publish are not counted."""

from __future__ import annotations

import pytest
from django.db import transaction

from domain.events.services import event_publish
from tests.metrics_utils import fresh_metrics, scrape, value

pytestmark = pytest.mark.django_db(transaction=True)

PING = {"type": "demo.ping", "payload": {"message": "hi"}}


_fresh = pytest.fixture(autouse=True)(fresh_metrics)


def _accepted(event_type: str = "demo.ping") -> float | None:
    return value(scrape(), "conveyor_events_accepted_total", type=event_type)


def test_single_and_batch_publishes_are_counted_by_type(client_all):
    # given 2 single publishes and a batch of 3
    for _ in range(2):
        assert client_all.post("/api/v1/events", PING, format="json").status_code == 202
    response = client_all.post("/api/v1/events/batch", {"events": [PING] * 3}, format="json")
    assert response.status_code == 202, response.content

    # then 5 demo.ping events are counted, and the jobs they made as created
    samples = scrape()
    assert value(samples, "conveyor_events_accepted_total", type="demo.ping") == 5
    assert value(samples, "conveyor_job_transitions_total", kind="noop",
                 transition="created") == 5


def test_an_idempotent_replay_is_not_counted_again(client_all):
    for _ in range(3):
        response = client_all.post("/api/v1/events", PING, format="json",
                                   HTTP_IDEMPOTENCY_KEY="metrics-42")
        assert response.status_code in (200, 202)

    assert _accepted() == 1


def test_an_invalid_or_rolled_back_publish_is_not_counted(client_all):
    # given a publish refused (422) and one rolled back with its caller's transaction
    assert client_all.post("/api/v1/events", {"type": "demo.ping", "payload": []},
                           format="json").status_code == 422
    with pytest.raises(RuntimeError), transaction.atomic():
        event_publish(event_type="demo.ping", payload={"message": "x"})
        raise RuntimeError("the caller rolls back")

    # then nothing is counted (a type nothing was published for is shown at 0)
    assert _accepted() == 0

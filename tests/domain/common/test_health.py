"""Liveness and readiness probes."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.broker_utils import UNREACHABLE_BROKER, broker_at
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db


# --- Probes -------------------------------------------------------------------------------

def test_healthz_is_ok_without_a_key():
    # when an anonymous caller asks for liveness
    response = Client().get("/healthz")

    # then the process says it is up
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_and_broker_ok():
    # when an anonymous caller asks for readiness with both servers up
    response = Client().get("/readyz")

    # then both checks are ok
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_broker_is_unreachable():
    # given the Celery app pointed at a local port nothing listens on (broker_at restores the
    # URL and drops the cached pools afterwards; closing the pool instead would leave a closed
    # pool behind that breaks every later publish with "Acquire on closed pool")
    with broker_at(UNREACHABLE_BROKER):
        # when readiness is probed
        response = Client().get("/readyz")

    # then it is a 503 naming the broker as down, and the database as ok
    error = assert_error(response, 503, "not_ready")
    assert "broker" in error["message"]
    assert error["details"]["database"] == "ok"
    assert error["details"]["broker"].startswith("down")

    # and once the broker is back the probe recovers
    again = Client().get("/readyz")
    assert again.status_code == 200, again.content
    assert again.json()["checks"]["broker"] == "ok"


def test_probes_only_answer_get():
    # when a probe is posted to
    response = Client().post("/healthz")

    # then the method is refused
    assert response.status_code == 405

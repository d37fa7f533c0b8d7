"""Liveness and readiness probes."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.broker_utils import UNREACHABLE_BROKER, broker_at
from tests.conftest import assert_error
from tests.database_utils import database_unreachable
from tests.faults.procs import fill_until_refused, free_ballast

pytestmark = pytest.mark.django_db


@pytest.fixture
def every_queue_consumed():
    """A worker's heartbeat, consuming every queue, written as a worker writes it
    (workers/presence.py): readiness then has nothing to say about the queues."""
    from workers.presence import forget, heartbeat
    from workers.queues import Queues

    queues = [queue.value for queue in Queues]
    heartbeat(hostname="probe@test", pid=1, queues=queues, configured=queues)
    yield
    forget("probe@test")


# --- Probes -------------------------------------------------------------------------------

def test_healthz_is_ok_without_a_key():
    # when an anonymous caller asks for liveness
    response = Client().get("/healthz")

    # then the process says it is up
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_and_broker_ok(every_queue_consumed):
    # when an anonymous caller asks for readiness with both servers up, and a worker
    # consuming every queue
    response = Client().get("/readyz")

    # then every check is ok, the workers' (workers/presence.py) included
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "broker": "ok", "queues": "ok"}
    assert body["queues"]["events"] == {"paused": False, "consumers": 1}


def test_readyz_is_degraded_naming_the_queues_no_worker_consumes():
    # when readiness is probed and no worker has been seen (see tests/workers/test_presence.py
    # for real workers)
    response = Client().get("/readyz")

    # then it is ready but degraded, naming every queue, with the database and broker ok
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == body["checks"]["broker"] == "ok"
    assert body["checks"]["queues"].startswith(
        "degraded: no worker seen consuming events, notifications, bulk, cache, maintenance")


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


@pytest.fixture
def own_broker(tmp_path):
    """A Redis of this test's own (its memory settings are changed), as the Celery broker."""
    from tests.faults.procs import RedisServer, free_port

    server = RedisServer(free_port(), tmp_path / "redis")
    server.start()
    try:
        with broker_at(server.broker_url):
            yield server.client()
    finally:
        server.stop(kill=True)


def test_readyz_says_degraded_when_the_broker_would_evict_messages(own_broker):
    # given a broker Redis whose memory policy evicts keys (queue lists included)
    own_broker.config_set("maxmemory-policy", "allkeys-lru")

    # when readiness is probed, then it is ready but degraded, naming the setting
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["broker"].startswith("degraded: maxmemory-policy is allkeys-lru")
    assert "noeviction" in body["checks"]["broker"]


def test_readyz_says_degraded_while_the_broker_is_out_of_memory(own_broker,
                                                                every_queue_consumed):
    # given a broker Redis full under noeviction: it answers, and refuses writes
    fill_until_refused(own_broker)

    # when readiness is probed, then it is degraded: out of memory (publishes still answer,
    # their jobs wait in the outbox)
    body = Client().get("/readyz").json()
    assert body["status"] == "degraded"
    assert body["checks"]["broker"] == "degraded: out of memory"
    # and once memory is freed, it is ready again
    free_ballast(own_broker)
    assert Client().get("/readyz").json()["status"] == "ready"


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_naming_the_database_when_it_does_not_answer_and_healthz_stays_200():
    # given the database gone (connection refused)
    with database_unreachable():
        # when both probes are asked
        ready = Client().get("/readyz")
        alive = Client().get("/healthz")

    # then readiness is a 503 naming the database as down, the broker as ok
    error = assert_error(ready, 503, "not_ready")
    assert "database" in error["message"]
    assert error["details"]["database"] == "down: OperationalError"
    assert error["details"]["broker"] == "ok"
    # and liveness stays 200: the process is alive, restarting it would not bring the
    # database back
    assert alive.status_code == 200

    # and once the database answers, readiness recovers by itself
    assert Client().get("/readyz").status_code == 200


def test_probes_only_answer_get():
    # when a probe is posted to
    response = Client().post("/healthz")

    # then the method is refused
    assert response.status_code == 405


def test_readyz_says_unknown_not_down_when_the_workers_presence_cannot_be_read(settings):
    # given the project's Redis (where workers write their presence) gone, the broker up
    from domain.common import redis as project_redis

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    project_redis._client = None
    try:
        response = Client().get("/readyz")
    finally:
        project_redis._client = None

    # then readiness is degraded (200), not down: the API still serves
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["queues"] == "unknown: workers not readable (ConnectionError)"


def test_an_added_readiness_check_that_fails_only_degrades_and_names_are_its_own():
    from domain.common import health

    def broken() -> str:
        raise RuntimeError("boom")

    health.register_readiness_check("probe", broken)
    try:
        body = Client().get("/readyz").json()
    finally:
        health._added_checks.pop("probe")
    assert body["status"] == "degraded"
    assert body["checks"]["probe"] == "unknown: RuntimeError"
    with pytest.raises(ValueError, match="readiness's own"):
        health.register_readiness_check("database", broken)

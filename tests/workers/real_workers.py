"""Real `celery worker` subprocesses for the queue-steering and presence tests, with the fault
suite's machinery (tests/faults: a Redis of the test's own on a spare port as broker and
effects store, workers sharing the test database). Import the fixtures into a test module:

    from tests.workers.real_workers import presence_redis, spare_redis, workers  # noqa: F401

`presence_redis` points this process's project Redis (REDIS_URL, where workers write their
presence) at the same spare Redis as the workers', so the readers here see their heartbeats.
"""

from __future__ import annotations

import pytest

import tests.faults.jobs  # noqa: F401 - the test-only job kinds, registered here too
from domain.common import redis as project_redis
from tests.faults.conftest import spare_redis, workers  # noqa: F401 - fixtures re-exported
from tests.faults.procs import EFFECTS_DB, Worker, wait_until
from workers.presence import workers_seen

# Workers in these tests write their presence and read the pause rows every second.
FAST = {"WORKER_HEARTBEAT_SECONDS": "1"}
# ... or never (within a test): only a broadcast (or a restart) tells them of a pause.
DEAF = {"WORKER_HEARTBEAT_SECONDS": "3600"}


@pytest.fixture
def presence_redis(spare_redis, settings):  # noqa: F811 - the fixture imported above
    settings.REDIS_URL = spare_redis.url(EFFECTS_DB)
    project_redis._client = None
    yield spare_redis.client(EFFECTS_DB)
    project_redis._client = None


def seen(worker: Worker) -> dict | None:
    return workers_seen().get(worker.name)


def wait_consuming(worker: Worker, queues: set[str], timeout: float = 60) -> dict:
    """Wait until the worker's presence says it consumes exactly `queues`; its record."""
    found: list[dict] = []

    def consuming() -> bool:
        record = seen(worker)
        if record is not None and set(record["queues"]) == queues:
            found.append(record)
        return bool(found)

    assert wait_until(consuming, timeout), (
        f"{worker.name} not seen consuming {sorted(queues)} in {timeout}s: {seen(worker)}\n"
        f"{worker.log()[-3000:]}")
    return found[0]

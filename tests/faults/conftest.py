"""Fixtures of the fault-injection suite: our own Redis (stoppable, restartable on the same
port) and real `celery worker` subprocesses sharing the test database.

Every test here is `django_db(transaction=True)`: the workers are other processes and only
see committed rows.
"""

from __future__ import annotations

import pytest
import redis

import tests.faults.jobs  # noqa: F401 - registers the test-only job kinds in this process too
from config.celery import app
from scheduler.sync import schedules_sync
from tests.broker_utils import broker_at
from tests.faults.procs import (
    PostgresServer,
    RedisServer,
    WorkerFactory,
    free_port,
    postgres_bindir,
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    factory = getattr(item, "_faults_workers", None)
    if factory is not None and report.failed:
        report.sections.append((f"worker logs ({report.when})", factory.logs()))


@pytest.fixture
def spare_redis(tmp_path) -> RedisServer:
    """Our own Redis on a free port; the test process's Celery app publishes to it (db 14)."""
    server = RedisServer(free_port(), tmp_path / "redis")
    server.start()
    try:
        with broker_at(server.broker_url):
            yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def effects(spare_redis) -> redis.Redis:
    """The Redis the workers write their effects and counters to (spare Redis, db 0)."""
    return spare_redis.client()


@pytest.fixture
def broker(spare_redis) -> redis.Redis:
    return spare_redis.client(14)


@pytest.fixture
def workers(request, spare_redis, transactional_db, tmp_path) -> WorkerFactory:
    """Start worker subprocesses with `workers.start()`; all are killed at teardown, before
    the database is flushed and before the Redis stops."""
    factory = WorkerFactory(app=app, redis_server=spare_redis, log_dir=tmp_path / "workers")
    request.node._faults_workers = factory
    try:
        yield factory
    finally:
        factory.cleanup()



@pytest.fixture
def private_postgres(transactional_db) -> PostgresServer:
    """A PostgreSQL cluster of our own, migrated, that this test may stop and start. For the
    test's duration the test process's own database connection points at it too, so
    everything it writes and reads (and the workers it starts, whose DATABASE_URL comes from
    that connection) is on the cluster the test breaks."""
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: the test stops a PostgreSQL server of its own")
    try:
        postgres_bindir()
    except FileNotFoundError as exc:
        pytest.skip(f"needs the PostgreSQL server binaries to start a cluster: {exc}")
    server = PostgresServer(free_port())
    saved = dict(connection.settings_dict)
    try:
        server.init()
        server.start()
        server.createdb("conveyor_faults")
        connection.close()
        connection.settings_dict.update(
            {"HOST": "127.0.0.1", "PORT": str(server.port), "NAME": "conveyor_faults",
             "USER": "postgres", "PASSWORD": ""})
        call_command("migrate", verbosity=0, interactive=False)
        yield server
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        server.remove()


@pytest.fixture
def beat(workers):
    """Beat running the project's schedules (the relay and the orphan rescue every 5 s), as
    in production: nothing below calls the rescue by hand."""
    schedules_sync()
    return workers.start_beat()

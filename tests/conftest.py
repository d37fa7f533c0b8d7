"""Shared fixtures: API clients with keys, a clean Redis, and a real Celery worker.

Everything runs against real servers: the database in DATABASE_URL (PostgreSQL in CI), the
Redis in REDIS_URL (broker on db 14, cache on db 15; see config/settings/test.py).
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from config.celery import app
from domain.access.models import Scopes
from domain.access.services import api_key_create
from tests.broker_utils import _reset_pools
from workers.queues import Queues

ALL_SCOPES = list(Scopes.values)


# The suites that stop, kill and restart real processes and servers, or time them: `-m slow`,
# run one test at a time after the rest, which runs on two processes (README, Test it).
SLOW = ("tests/faults/", "tests/bench/")


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (README, Test it): two processes on PostgreSQL; on the SQLite fallback one,
    in this process. SQLite has a single writer, and two processes' workers and threads
    contending for it made two timing-bound tests fail there; the SQLite run is the small
    one anyway (a fresh machine's)."""
    url = os.environ.get("DATABASE_URL", "")
    return 2 if url.startswith(("postgres://", "postgresql://")) else 0


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parent.parent
    for item in items:
        if Path(item.fspath).resolve().relative_to(root).as_posix().startswith(SLOW):
            item.add_marker(pytest.mark.slow)
    vendor = connection.vendor
    if vendor == "postgresql":
        return
    if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
        raise pytest.UsageError(
            "CONVEYOR_REQUIRE_SERVICES=1 but the test database is "
            f"{vendor}; set DATABASE_URL to PostgreSQL.")
    skip = pytest.mark.skip(
        reason=f"needs PostgreSQL (row locks / SKIP LOCKED); this run uses {vendor}. "
        "Set DATABASE_URL=postgres://... to run it.")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _delete_prefixed(client: redis.Redis, prefix: str, keep: bytes | None = None) -> None:
    keys = [k for k in client.scan_iter(f"{prefix}*", count=1000) if not (keep and keep in k)]
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _clean_redis():
    """Every test starts with empty queues, no locks and an empty cache — this run's only:
    every key of this run carries settings.TEST_KEY_PREFIX (see config/settings/test.py)."""
    # Binding keys (_kombu.binding.*) stay: Celery's own pidbox and event exchanges use them
    # (task queues have none: they are declared on the default exchange, workers/queues.py).
    _delete_prefixed(redis.Redis.from_url(settings.CELERY_BROKER_URL),
                     settings.TEST_KEY_PREFIX, keep=b"_kombu.")
    _delete_prefixed(redis.Redis.from_url(settings.REDIS_URL), settings.TEST_KEY_PREFIX)
    _delete_prefixed(redis.Redis.from_url(settings.CACHES["default"]["LOCATION"]),
                     settings.TEST_KEY_PREFIX)
    yield


@pytest.fixture(autouse=True)
def _fresh_webhook_subscriptions():
    """Which event types have a webhook endpoint is cached per process for a second; a test's
    rolled-back endpoints must not give the next test's events a fan-out job."""
    from domain.notifications.subscriptions import subscriptions

    subscriptions.forget()
    yield
    subscriptions.forget()


@pytest.fixture(autouse=True)
def _fresh_queue_pauses():
    """Which queues are paused is cached per process for a second; a test's rolled-back pause
    must not hold the next test's jobs."""
    from domain.jobs.selectors import paused_queues

    paused_queues.forget()
    yield
    paused_queues.forget()


@pytest.fixture
def broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def broker_key(name: str) -> str:
    """A broker key as stored in Redis (kombu adds this run's global key prefix)."""
    return settings.TEST_KEY_PREFIX + name


def queued_messages(broker: redis.Redis, queue: str) -> list[dict]:
    """The messages waiting in a queue, decoded (kombu's Redis transport keeps a list)."""
    return [json.loads(raw) for raw in broker.lrange(broker_key(queue), 0, -1)]


def message_args(message: dict) -> list:
    """The positional arguments of a Celery message as kombu's Redis transport stores it."""
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return args


def queued_tasks(broker: redis.Redis, queue: str) -> list[dict]:
    """The task messages waiting in a queue, oldest first: task name, task id, the one argument
    (a job id, or a micro-batch's list of them) and the ETA."""
    return [{"task": m["headers"]["task"], "id": m["headers"]["id"],
             "arg": message_args(m)[0], "eta": m["headers"].get("eta")}
            for m in reversed(queued_messages(broker, queue))]  # LPUSH: oldest last


def queued_job_ids(broker: redis.Redis, queue: str) -> list[str]:
    """The job ids the messages in a queue carry: one per single-job message, all of a
    micro-batch's (domain/jobs/outbox.py), in queue order."""
    ids: list[str] = []
    for task in queued_tasks(broker, queue):
        ids.extend(task["arg"] if isinstance(task["arg"], list) else [task["arg"]])
    return ids


@pytest.fixture
def make_client(db) -> Callable[..., APIClient]:
    def _make(scopes: list[str] | None = None, name: str = "test") -> APIClient:
        key, raw = api_key_create(name=name, scopes=ALL_SCOPES if scopes is None else scopes)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        client.api_key = key
        client.raw_key = raw
        return client

    return _make


@pytest.fixture
def client_all(make_client) -> APIClient:
    """A client whose key has every scope except admin (it sees only its own rows)."""
    return make_client([s for s in ALL_SCOPES if s != Scopes.ADMIN])


@pytest.fixture(scope="session")
def celery_worker_thread(django_db_setup, django_db_blocker):
    """A real Celery worker consuming every queue from the real broker, in a thread.

    Tests that use it must be `django_db(transaction=True)`: the worker has its own database
    connection and only sees committed rows, as in production.
    """
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    # Without the queue-steering bootstep (workers/steering.py): it would write this worker's
    # presence into the test process's project Redis, wherever a test points it, and the
    # presence and readiness tests would count it among the workers they start or expect
    # absent. Pauses are tested on worker subprocesses (tests/workers/test_steering.py); the
    # claim's own pause check still runs here. The consumer copies the steps when it is built.
    steering = "workers.steering:QueueSteering"
    app.steps["consumer"].discard(steering)
    try:
        with start_worker(
            app,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            queues=[q.value for q in Queues],
            loglevel="WARNING",
            shutdown_timeout=30,
        ) as worker:
            app.steps["consumer"].add(steering)
            yield worker
    finally:
        app.steps["consumer"].add(steering)


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response is the one JSON error shape; return its `error` object."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05,
             message: str = "condition") -> object:
    """Poll until predicate() is truthy; fail the test (not hang) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")


def run_command(command: str, *args, **options) -> tuple[str, str]:
    """A management command's stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def operator(client, django_user_model):
    """A test client logged in to the admin as a superuser."""
    django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.login(username="ops", password="pw")
    return client


def drf_request() -> Request:
    """A DRF request, for serializers that build absolute URLs."""
    return Request(APIRequestFactory().get("/api/v1/jobs", HTTP_HOST="testserver"))


def drf_fields_output(serializer: serializers.Serializer, instance) -> dict:
    """DRF's own field-by-field rendering, bypassing a serializer's to_representation."""
    return serializers.Serializer.to_representation(serializer, instance)


def bearer(raw: str) -> APIClient:
    """A client that sends `raw` as its API key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


class PrivateKeys:
    """The broker keys of one test, under this run's prefix: `private-<hex>:<name>`."""

    def __init__(self, broker: redis.Redis) -> None:
        self.broker = broker
        self.sub = f"private-{uuid.uuid4().hex[:8]}:"

    def messages(self, queue: str) -> list[dict]:
        return queued_messages(self.broker, self.sub + queue)

    def job_ids(self, queue: str) -> list[str]:
        return queued_job_ids(self.broker, self.sub + queue)

    def binding_keys(self) -> list[bytes]:
        return list(self.broker.scan_iter(broker_key(f"{self.sub}_kombu.binding*"), count=1000))

    def bound_queues(self) -> set[str]:
        """Queues named in a binding table (a member is routing key, pattern, queue)."""
        return {member.decode().rsplit("\x06\x16", 1)[-1]
                for key in self.binding_keys() if self.broker.type(key) == b"set"
                for member in self.broker.smembers(key)}


@pytest.fixture
def private_broker(broker: redis.Redis) -> Iterator[PrivateKeys]:
    """Publish under a key prefix of this test's own. The session's worker thread
    (tests/conftest.py), once started, consumes every queue under the run's prefix and would
    take the messages these tests look at; it never sees these keys."""
    keys = PrivateKeys(broker)
    options = app.conf.broker_transport_options
    app.conf.broker_transport_options = {
        **options, "global_keyprefix": options["global_keyprefix"] + keys.sub}
    _reset_pools()
    try:
        yield keys
    finally:
        app.conf.broker_transport_options = options
        _reset_pools()
        stale = list(broker.scan_iter(broker_key(keys.sub + "*"), count=1000))
        if stale:
            broker.delete(*stale)


@pytest.fixture
def install_job_hooks():
    """Install job hooks (domain/jobs/hooks.py) for one test; the events' roll-up comes back
    after it."""
    from domain.jobs import hooks as job_hooks

    before = job_hooks.hooks()

    def install(hooks):
        job_hooks.install_hooks(hooks, replace=True)
        return hooks

    yield install
    job_hooks.install_hooks(before, replace=True)


def assert_changelist_loads(operator, model: str) -> None:
    """The admin's list of `app_label/model` loads for an operator, also with a search."""
    from django.urls import reverse

    app_label, model_name = model.split("/")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    assert operator.get(url).status_code == 200
    assert operator.get(url + "?q=x").status_code == 200


def simultaneously(count: int, send: Callable[[], object], timeout: float = 60) -> list:
    """Run `send` in `count` threads released together (a barrier), each on its own database
    connection, closed after; return what each returned, in thread order. An exception in a
    thread, or a thread still running after `timeout`, fails the test."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = send()
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
    return results


@pytest.fixture
def smtp_sink(settings):
    """A real SMTP server (tests/smtp_sink.py) that Django's email backend sends to: the
    project's SMTP backend (pytest-django puts the in-memory one in place otherwise)."""
    from tests.smtp_sink import SmtpSink

    with SmtpSink() as sink:
        settings.EMAIL_BACKEND = "domain.notifications.email_backend.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_TIMEOUT = 5
        yield sink

"""A gunicorn worker killed while it handles a batch: the client sees its connection drop,
retries with the same Idempotency-Key, and exactly one copy of the batch exists.

Issue 10, finding 8: killed workers left batches of 500 events committed while their clients
saw connection resets, and a retry stored them again. Whether the kill lands before or after
the commit is decided here, not left to timing, so neither case needs luck (and no scenario is
ever re-run until it passes):

- before the commit: this test holds a SHARE lock on the events table, so the server's INSERT
  waits; the worker is killed once PostgreSQL shows the server's session waiting for that
  lock. Its transaction never commits; the retry stores the batch (202).
- after the commit, before the answer: the server hands jobs over in the request
  (OUTBOX_SEND=inline) and its broker (a Redis of this test's own) is paused with SIGSTOP, so
  the hand-over after commit (`transaction.on_commit`) blocks for the broker's socket
  timeout; the worker is killed as soon as the batch's rows are visible, i.e. committed. The
  retry gets the stored batch (200, Idempotent-Replayed), and the relay later sends the jobs
  the killed worker never handed over.

The server is a real gunicorn with compose/django/start's worker class, one worker process
(the one killed; its master starts another), sharing this run's test database. The client is
a plain socket: it sends the whole request, then the kill happens, then it reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from domain.access.models import Scopes
from domain.access.services import api_key_create
from domain.events.models import BatchPublish, Event
from domain.jobs.models import Job
from domain.jobs.outbox import outbox_relay
from tests.faults.procs import (
    GunicornServer,
    RedisServer,
    database_url,
    free_port,
    running_gunicorn,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EVENTS = 500
KEY = "batch-after-reset-1"


@contextlib.contextmanager
def gunicorn(tmp_path: Path, *, broker_url: str,
             outbox_send: str = "background") -> Iterator[GunicornServer]:
    """A real gunicorn (tests/faults/procs.py) handing jobs to `broker_url`; a 60 s worker
    timeout, so a worker blocked on a paused broker is the test's to kill, not gunicorn's."""
    with running_gunicorn(tmp_path, timeout=60, TEST_BROKER_URL=broker_url,
                          OUTBOX_SEND=outbox_send) as server:
        yield server


@pytest.fixture
def broker_redis(tmp_path) -> Iterator[RedisServer]:
    """The server's broker: a Redis of this test's own, which the test may pause."""
    server = RedisServer(free_port(), tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGCONT)
        server.stop(kill=True)


@pytest.fixture
def raw_key(transactional_db) -> str:
    _key, raw = api_key_create(name="batch-retry", scopes=[Scopes.EVENTS_PUBLISH])
    return raw


def batch_body() -> bytes:
    """500 events of about 1 KB each: a large batch, well inside the batch body limit."""
    return json.dumps({"events": [
        {"type": "demo.ping", "payload": {"message": f"event {i}", "filler": "x" * 1000}}
        for i in range(EVENTS)]}).encode()


def send(sock: socket.socket, port: int, body: bytes, raw_key: str) -> None:
    """The whole request, headers and body, before anything is read."""
    head = (f"POST /api/v1/events/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {raw_key}\r\n"
            f"Idempotency-Key: {KEY}\r\nContent-Length: {len(body)}\r\n\r\n")
    sock.sendall(head.encode() + body)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes] | str:
    """One response framed by Content-Length, or what the client saw instead of it."""
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                return f"connection closed after {len(buf)} bytes of the answer"
            buf += data
        head, body = buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
        while len(body) < int(headers["content-length"]):
            data = sock.recv(65536)
            if not data:
                return "connection closed mid-answer"
            body += data
    except OSError as exc:
        return f"reading failed: {exc!r}"
    return int(status_line.split()[1]), headers, body


def retry(server: GunicornServer, body: bytes, raw_key: str) -> tuple[int, dict[str, str], dict]:
    """The client's retry: the same request on a new connection (served by the new worker)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        send(sock, server.port, body, raw_key)
        answer = read_answer(sock)
    assert not isinstance(answer, str), f"{answer}\n{server.log()}"
    status, headers, content = answer
    return status, headers, json.loads(content)


def waiting_for_a_lock(conn) -> bool:
    """Whether another session of this test database waits for a lock (the server's INSERT)."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
        return cur.fetchone()[0] > 0


def assert_one_copy(answer: dict) -> None:
    """Exactly one copy of the batch is stored, and the answer lists exactly it, in order."""
    listed = [event["id"] for event in answer["events"]]
    assert len(listed) == EVENTS
    assert [e["payload"]["message"] for e in answer["events"]] == [
        f"event {i}" for i in range(EVENTS)]
    assert {str(pk) for pk in Event.objects.values_list("pk", flat=True)} == set(listed)
    assert Job.objects.count() == EVENTS
    [record] = BatchPublish.objects.all()
    assert record.event_ids == listed


def test_worker_killed_before_the_commit_the_retry_stores_the_batch_once(
        tmp_path, broker_redis, raw_key):
    # given a server whose next events INSERT must wait: this test holds a SHARE lock on the
    # events table in a transaction of its own
    body = batch_body()
    with gunicorn(tmp_path, broker_url=broker_redis.broker_url) as server:
        locker = psycopg2.connect(database_url())
        try:
            with locker.cursor() as cur:
                cur.execute('LOCK TABLE "events_event" IN SHARE MODE')
            watcher = psycopg2.connect(database_url())
            watcher.autocommit = True

            # when the client sends the whole batch, the server reaches the INSERT and waits,
            # and its worker process is killed there
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                send(sock, server.port, body, raw_key)
                assert wait_until(lambda: waiting_for_a_lock(watcher), 60), server.log()
                os.kill(server.worker_pid(), signal.SIGKILL)
                first = read_answer(sock)
            watcher.close()
        finally:
            locker.rollback()  # the lock goes; the killed worker's transaction never commits
            locker.close()

        # then the client got no answer: its connection dropped mid-request
        assert isinstance(first, str), first

        # when it retries with the same key
        status, headers, answer = retry(server, body, raw_key)

    # then the retry stored the batch (the first attempt had stored nothing), exactly once
    assert status == 202, (status, answer.get("error"), Event.objects.count())
    assert "idempotent-replayed" not in headers
    assert_one_copy(answer)


def test_worker_killed_after_the_commit_the_retry_gets_the_stored_batch(
        tmp_path, broker_redis, raw_key):
    # given a server whose broker is paused (SIGSTOP) and which hands jobs over in the request
    # (OUTBOX_SEND=inline): the hand-over after the commit blocks, so the answer waits. With
    # production's background hand-over nothing stands between the commit and the answer, and
    # whether the kill lands before the answer would be a race (CI lost it once).
    body = batch_body()
    with gunicorn(tmp_path, broker_url=broker_redis.broker_url, outbox_send="inline") as server:
        os.kill(broker_redis.pid, signal.SIGSTOP)
        try:
            # when the client sends the whole batch, the server commits it, and its worker
            # process is killed as soon as the rows are visible (committed), before it answers
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                send(sock, server.port, body, raw_key)
                assert wait_until(Event.objects.exists, 60, interval=0.02), server.log()
                os.kill(server.worker_pid(), signal.SIGKILL)
                first = read_answer(sock)
        finally:
            os.kill(broker_redis.pid, signal.SIGCONT)

        # then the client got no answer, although the batch was stored
        assert isinstance(first, str), first
        assert Event.objects.count() == EVENTS

        # when it retries with the same key
        status, headers, answer = retry(server, body, raw_key)

    # then it gets the stored batch, and no second copy was made
    assert status == 200, (status, answer.get("error"), Event.objects.count())
    assert headers["idempotent-replayed"] == "true"
    assert_one_copy(answer)

    # and the jobs the killed worker never handed to the broker are the relay's to send
    assert Job.objects.filter(enqueued_at__isnull=True).count() == EVENTS
    assert outbox_relay(grace_seconds=0) == EVENTS
    assert not Job.objects.filter(enqueued_at__isnull=True).exists()

"""A body over the limit gets its 413 on a real gunicorn, read by a real socket client.

Why a real server: the failure lives in the HTTP server, not in Django. gunicorn reads only
64 KiB of a body the application left unread, then closes the socket with the rest still
arriving, and the kernel answers that with a TCP reset. A client still sending then fails
with a broken pipe or a connection reset instead of reading the 413. Django's test client
never touches a socket, and `runserver` / `live_server` read every unread body to its end
whatever its size, so neither shows it. The client here writes its whole body first and only
then reads, paced, as plain HTTP clients do; the server runs with the production flags
(gthread) against this run's test database.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from domain.access.models import Scopes
from domain.access.services import api_key_create
from domain.common.bodies import DRAIN_FACTOR, discard_body
from tests.faults.procs import GunicornServer
from tests.faults.procs import running_gunicorn as procs_gunicorn

MiB = 1024 * 1024
PUBLISH = "/api/v1/events"
BATCH = "/api/v1/events/batch"
# The batch limit is lowered for the server so that 1.5x of it stays a few MiB, and kept above
# twice the default limit, so that a batch body can be larger than the default's drain bound.
BATCH_LIMIT = 4 * MiB


@contextlib.contextmanager
def running_gunicorn(tmp_path: Path, **extra_env: str) -> Iterator[GunicornServer]:
    """A real gunicorn (tests/faults/procs.py) with this module's lowered batch limit."""
    with procs_gunicorn(tmp_path, API_MAX_BATCH_BODY_BYTES=str(BATCH_LIMIT),
                        **extra_env) as server:
        yield server


@pytest.fixture(scope="module")
def _module_gunicorn(django_db_setup, django_db_blocker,
                     tmp_path_factory) -> Iterator[GunicornServer]:
    """One server for the module's tests (its start is most of a test's time): each test
    brings its own key and rows, and a server left unwell by one test fails the next."""
    with django_db_blocker.unblock(), running_gunicorn(
            tmp_path_factory.mktemp("gunicorn")) as server:
        yield server


@pytest.fixture
def gunicorn(transactional_db, _module_gunicorn) -> GunicornServer:
    assert _module_gunicorn.proc.poll() is None, _module_gunicorn.log()
    return _module_gunicorn


@pytest.fixture
def throttled_gunicorn(transactional_db, tmp_path) -> Iterator[GunicornServer]:
    """The same server with a publish budget of one request a minute per key."""
    with running_gunicorn(tmp_path,
                          API_THROTTLE_RATES="publish=1/m,read=120000/m,write=6000/m") as server:
        yield server


@pytest.fixture
def api_key(transactional_db) -> str:
    _key, raw = api_key_create(name="body-limit", scopes=[Scopes.EVENTS_PUBLISH])
    return raw


@dataclass
class Answer:
    status: int | None = None
    headers: dict[str, str] | None = None
    body: bytes = b""
    error: str | None = None  # what the client saw instead of a complete answer

    def json(self) -> dict:
        return json.loads(self.body)


def json_body(size: int, *, batch: bool = False) -> bytes:
    """A well-formed publish (or batch) body of exactly `size` bytes."""
    head = b'{"type": "demo.ping", "payload": {"message": "'
    tail = b'"}}'
    if batch:
        head, tail = b'{"events": [' + head, tail + b"]}"
    return head + b"x" * (size - len(head) - len(tail)) + tail


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP/1.1 response framed by Content-Length (what Django sends), from `sock`."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return Answer(error=f"connection closed after {len(buf)} bytes of the answer")
        buf += data
    head, body = buf.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            return Answer(error="connection closed mid-answer")
        body += data
    return Answer(int(status_line.split()[1]), headers, body)


def send_request(sock: socket.socket, path: str, body: bytes, *, key: str,
                 pace: float = 0.0, content_type: str = "application/json") -> Answer | None:
    """Write the request, the body in 64 KiB pieces (`pace` seconds apart: a client on a real
    network, still sending when the server answers), the way plain clients do: everything
    first, then read. None when the whole request went out; else what went wrong."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n")
    try:
        sock.sendall(head.encode())
        view = memoryview(body)
        for start in range(0, len(body), 65536):
            sock.sendall(view[start:start + 65536])
            if pace:
                time.sleep(pace)
    except OSError as exc:
        return Answer(error=f"sending failed: {exc!r}")
    return None


def post(sock: socket.socket, path: str, body: bytes, *, key: str, pace: float = 0.0,
         content_type: str = "application/json") -> Answer:
    failed = send_request(sock, path, body, key=key, pace=pace, content_type=content_type)
    if failed:
        return failed
    try:
        return read_answer(sock)
    except OSError as exc:
        return Answer(error=f"reading failed: {exc!r}")


def connect(server: GunicornServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=60)


def assert_413(answer: Answer, limit: int, server: GunicornServer) -> None:
    assert answer.error is None, f"{answer.error}\n{server.log()}"
    assert answer.status == 413, answer
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "request_too_large"
    assert str(limit) in error["message"]


@pytest.mark.parametrize(("path", "limit"), [
    pytest.param(PUBLISH, 1 * MiB, id="publish-default-limit"),
    pytest.param(BATCH, BATCH_LIMIT, id="batch-own-limit"),
])
def test_body_half_over_the_limit_gets_a_complete_413(gunicorn, api_key, path, limit):
    # given the real server's limit for the endpoint (1 MiB by default; the batch view's own)
    # and a body half as large again, inside the drain bound
    body = json_body(limit * 3 // 2, batch=path == BATCH)
    assert limit < len(body) <= DRAIN_FACTOR * limit

    # when a plain socket client sends all of it, paced, and only then reads
    with connect(gunicorn) as sock:
        answer = post(sock, path, body, key=api_key, pace=0.005)

        # then it read a complete 413 in the JSON error shape (no broken pipe, no reset)
        assert_413(answer, limit, gunicorn)

        # then the same connection is still in step: the next request on it is served
        follow_up = post(sock, PUBLISH, json_body(200), key=api_key)
    assert follow_up.status == 202, (follow_up, gunicorn.log())


def test_body_far_past_the_bound_is_cut_off_and_the_server_stays_healthy(gunicorn, api_key):
    # given a body eight times the limit, which its Content-Length announces
    limit = 1 * MiB
    body = json_body(8 * limit)

    # when a plain socket client sends it, paced
    with connect(gunicorn) as sock:
        answer = post(sock, PUBLISH, body, key=api_key, pace=0.005)

    # then it read the 413, or the server closed the connection on it (it is not drained)
    if answer.error is None:
        assert_413(answer, limit, gunicorn)

    # then the server is healthy: a new connection is served
    with connect(gunicorn) as sock:
        follow_up = post(sock, PUBLISH, json_body(200), key=api_key)
    assert follow_up.status == 202, (follow_up, gunicorn.log())


@pytest.fixture
def read_only_key(transactional_db) -> str:
    _key, raw = api_key_create(name="body-limit-read", scopes=[Scopes.EVENTS_READ])
    return raw


@pytest.mark.parametrize(("path", "key", "content_type", "status"), [
    pytest.param(PUBLISH, "cvk_no_such_key", "application/json", 401, id="401-unknown-key"),
    pytest.param(PUBLISH, "read_only_key", "application/json", 403, id="403-missing-scope"),
    pytest.param(PUBLISH, "api_key", "text/plain", 415, id="415-unsupported-media-type"),
    # a batch larger than the default limit, refused before parsing: drained against the
    # batch view's own limit
    pytest.param(BATCH, "cvk_no_such_key", "application/json", 401, id="batch-401"),
    pytest.param(BATCH, "api_key", "text/plain", 415, id="batch-415"),
])
def test_a_large_body_answered_before_any_parser_gets_its_error(
        gunicorn, request, path, key, content_type, status):
    # given a body inside the endpoint's limit (but far over gunicorn's own 64 KiB drain) that
    # is refused before any parser reads it: an unknown key, a key without the scope, a media
    # type
    if key in ("read_only_key", "api_key"):
        key = request.getfixturevalue(key)
    size = BATCH_LIMIT * 3 // 4 if path == BATCH else 1 * MiB
    # (a batch past twice the default limit: only the batch view's own limit drains it)
    assert path == PUBLISH or size > DRAIN_FACTOR * MiB
    body = json_body(size, batch=path == BATCH)

    # when a plain socket client sends all of it, paced, and only then reads
    with connect(gunicorn) as sock:
        answer = post(sock, path, body, key=key, pace=0.005, content_type=content_type)

        # then it read its error, in the JSON shape, on a connection still in step
        assert answer.error is None, f"{answer.error}\n{gunicorn.log()}"
        assert answer.status == status, answer
        assert set(answer.json()["error"]) == {"code", "message", "details"}
        follow_up = post(sock, "/api/v1/no-such-endpoint", b"{}", key=key)
    assert follow_up.status in (401, 404), (follow_up, gunicorn.log())


def test_a_throttled_batch_gets_its_429_and_retry_after(throttled_gunicorn, api_key):
    # given a key that used its one publish of the minute
    with connect(throttled_gunicorn) as sock:
        assert post(sock, PUBLISH, json_body(200), key=api_key).status == 202

        # when it sends a batch over the default body limit, paced, and only then reads
        body = json_body(BATCH_LIMIT * 3 // 4, batch=True)
        answer = post(sock, BATCH, body, key=api_key, pace=0.005)

    # then it read the whole 429, with when to come back
    assert answer.error is None, f"{answer.error}\n{throttled_gunicorn.log()}"
    assert answer.status == 429, answer
    assert answer.json()["error"]["code"] == "throttled"
    assert 1 <= int(answer.headers["retry-after"]) <= 60


@pytest.mark.parametrize(("size", "declared", "read"), [
    pytest.param(3 * MiB // 2, 3 * MiB // 2, 3 * MiB // 2, id="ends-inside-the-bound"),
    pytest.param(5 * MiB, None, 2 * MiB, id="no-length-stops-at-the-bound"),
    pytest.param(5 * MiB, 5 * MiB, MiB + 1, id="declared-past-the-bound-not-drained"),
])
def test_discard_body_reads_no_further_than_the_bound(size, declared, read):
    """The bound holds in the drain itself, whatever the stream holds."""
    # given a refused body of which limit+1 bytes were read
    limit = MiB
    stream = io.BytesIO(b"x" * size)
    stream.read(limit + 1)

    # when the rest is discarded with the parser's bound
    ended = discard_body(stream, read=limit + 1, bound=DRAIN_FACTOR * limit, declared=declared)

    # then it read up to the end or the bound, no further, and says whether the body ended
    assert stream.tell() == read
    assert ended is (read == size)

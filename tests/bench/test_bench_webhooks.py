"""The `webhooks` scenario's tools count what they claim: the receiver (bench/receiver.py)
counts and records every request it answers, keeps whole samples whose signatures the suite
verifies, and the scenario's helpers join arrivals to publish times. No timing is asserted."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bench.report import table
from bench.stack import free_port, wait_until
from bench.webhooks import duplicates, latencies_ms, verify_samples
from domain.notifications.models import new_secret

ROOT = Path(__file__).resolve().parents[2]


class _Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    def json(self, path: str, method: str = "GET"):
        status, body = self.call(method, path, body=b"" if method == "POST" else None)
        assert status == 200
        return json.loads(body)


@pytest.fixture
def receiver():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver",
         json.dumps({"port": port, "delay": 0.01, "sample_every": 5, "max_samples": 8})],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(proc.stdout.readline())["listening"] == port
        client = _Client(port)
        wait_until(lambda: client.json("/_stats") is not None, 10, "the receiver")
        yield client
    finally:
        proc.terminate()
        proc.wait(10)


def _signed(secret: str, n: int) -> tuple[str, bytes, dict]:
    message_id = f"msg_{n:032x}"
    body = json.dumps({"type": "bench.webhook", "data": {"n": n}})
    now = datetime.now(UTC)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(secret).sign(message_id, now, body),
               "content-type": "application/json"}
    return message_id, body.encode(), headers


def test_the_receiver_counts_and_records_every_request_once(receiver):
    # given two endpoints' secrets, and 8 clients each sending 25 signed requests on one
    # keep-alive connection, alternating between the two paths
    secrets = {"/hook/0": new_secret(), "/hook/1": new_secret()}
    sent: list[tuple[str, str]] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=30)
        for i in range(25):
            path = f"/hook/{i % 2}"
            message_id, body, headers = _signed(secrets[path], c * 100 + i)
            conn.request("POST", path, body=body, headers=headers)
            answer = conn.getresponse()
            answer.read()
            with lock:
                statuses.append(answer.status)
                sent.append((message_id, path))
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then every request was answered 200, and the receiver counted exactly those
    assert statuses == [200] * 200
    stats = receiver.json("/_stats")
    assert stats["count"] == 200 and stats["first"] <= stats["last"]
    records = receiver.json("/_records")
    assert sorted((mid, path) for _, mid, path in records) == sorted(sent)
    assert duplicates(records) == 0

    # and the samples it kept (every 5th, at most 8) are whole: their signatures verify with
    # their endpoint's secret, and with no other
    samples = receiver.json("/_samples")
    assert len(samples) == 8
    assert verify_samples(samples, secrets) == 8
    swapped = {"/hook/0": secrets["/hook/1"], "/hook/1": secrets["/hook/0"]}
    with pytest.raises(WebhookVerificationError):
        verify_samples(samples, swapped)

    # and a reset forgets them (control requests are not counted)
    receiver.json("/_reset", method="POST")
    assert receiver.json("/_stats") == {"count": 0, "first": None, "last": None}


def test_the_receiver_closes_a_connection_that_asks_for_it(receiver):
    # when a client says Connection: close
    status, body = receiver.call("POST", "/hook/0", body=b"{}",
                                 headers={"webhook-id": "msg_1", "Connection": "close"})

    # then it is answered and counted
    assert (status, body) == (200, b"ok")
    assert receiver.json("/_stats")["count"] == 1


def test_a_duplicate_send_is_counted_as_one():
    records = [[1.0, "msg_a", "/hook/0"], [1.1, "msg_a", "/hook/1"], [1.2, "msg_a", "/hook/0"]]
    assert duplicates(records) == 1


def test_latency_joins_each_arrival_to_its_message_publish_time():
    # given three arrivals, one of a message the suite did not publish
    records = [[10.5, "msg_a", "/hook/0"], [10.25, "msg_a", "/hook/1"],
               [11.0, "msg_b", "/hook/0"], [12.0, "msg_other", "/hook/0"]]
    published = {"msg_a": 10.0, "msg_b": 10.9}

    # then the latencies are the known ones, in milliseconds, sorted
    assert [round(x) for x in latencies_ms(records, published)] == [100, 250, 500]


def test_the_report_sets_webhooks_against_the_bare_baseline():
    # given a report as the suite writes it
    report = json.loads((Path(__file__).parent / "sample_report.json").read_text())

    # then each worker count is a row against bare Celery + requests, and latency is a row
    lines = table(report).splitlines()
    one = [line for line in lines if "1 notifications worker(s)" in line]
    two = [line for line in lines if "2 notifications worker(s)" in line]
    assert len(one) == len(two) == 1
    assert "850 deliveries/s" in one[0] and "21.25x" in one[0] and "NO" in one[0]
    assert "40 deliveries/s bare Celery task + requests" in one[0]
    assert "1,200 deliveries/s" in two[0] and "30.00x" in two[0] and "yes" in two[0]
    [latency] = [line for line in lines if "publish -> received" in line]
    assert "p50 80.5 ms, p99 210.2 ms" in latency and "600 deliveries/s" in latency
    assert "publish -> fan-out 12.4 ms, delivery job queued 5.3 ms" in latency

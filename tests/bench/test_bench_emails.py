"""The `emails` scenario's tools count what they claim: the SMTP sink (bench/smtp_sink.py)
accepts, counts and records every message it is sent, with its Message-ID, and keeps whole
samples that the suite checks for the rendered template; the baseline (bench/bare_email.py)
sends the messages it says, one connection each; the report sets the figures against the
baseline. No timing is asserted."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.mail import EmailMultiAlternatives, get_connection

from bench.emails import CONTEXT, TEMPLATE, check_samples, duplicates
from bench.report import table
from bench.stack import free_port, wait_until
from domain.notifications.catalogue import get_template

ROOT = Path(__file__).resolve().parents[2]
DJANGO_SMTP = "django.core.mail.backends.smtp.EmailBackend"


class Sink:
    def __init__(self, port: int, control_port: int) -> None:
        self.port, self.control_port = port, control_port

    def json(self, path: str, method: str = "GET"):
        conn = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=30)
        try:
            conn.request(method, path, body=b"" if method == "POST" else None)
            answer = conn.getresponse()
            assert answer.status == 200
            return json.loads(answer.read())
        finally:
            conn.close()

    def connection(self):
        return get_connection(DJANGO_SMTP, host="127.0.0.1", port=self.port, timeout=10)


@pytest.fixture
def sink():
    port, control = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.smtp_sink",
         json.dumps({"port": port, "control_port": control, "sample_every": 4,
                     "max_samples": 3})],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(proc.stdout.readline()) == {"listening": port, "control": control}
        client = Sink(port, control)
        wait_until(lambda: client.json("/_stats") is not None, 10, "the SMTP sink")
        yield client
    finally:
        proc.terminate()
        proc.wait(10)


def _rendered():
    return get_template(TEMPLATE).render(CONTEXT, recipient={"id": "r", "email": "r@example.com"},
                                         extra={"unsubscribe_url": ""})


def _email(n: int, rendered) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=rendered.subject, body=rendered.text, from_email="Bench <bench@example.com>",
        to=[f"user{n}@example.com"], headers={"Message-ID": f"<{n:08d}@bench.example>"})
    message.attach_alternative(rendered.html, "text/html")
    return message


def test_the_sink_accepts_counts_and_records_every_message_once(sink):
    # given 4 SMTP connections (Django's SMTP backend), each sending 10 rendered emails
    rendered = _rendered()
    sent: list[int] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with sink.connection() as connection:
            for n in range(k * 10, k * 10 + 10):
                assert connection.send_messages([_email(n, rendered)]) == 1
                with lock:
                    sent.append(n)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then it counted 40 emails, recorded each Message-ID once, in arrival order ...
    stats = sink.json("/_stats")
    records = sink.json("/_records")
    assert len(sent) == 40 and stats["count"] == 40 and stats["connections"] >= 4
    assert sorted(r[1] for r in records) == [f"<{n:08d}@bench.example>" for n in range(40)]
    assert duplicates(records) == 0
    assert [r[0] for r in records] == sorted(r[0] for r in records)
    assert stats["first"] == records[0][0] and stats["last"] == records[-1][0]
    # ... and kept every 4th message whole, up to 3: the rendered template, both parts
    samples = sink.json("/_samples")
    assert len(samples) == 3
    assert check_samples(samples, rendered.subject) == 3

    # when it is reset, it forgets everything
    assert sink.json("/_reset", method="POST") == {"ok": True}
    assert sink.json("/_stats")["count"] == 0 and sink.json("/_records") == []


def test_a_sample_that_is_not_the_rendered_template_is_refused(sink):
    # given an email with a text part only
    with sink.connection() as connection:
        for _ in range(4):
            connection.send_messages([EmailMultiAlternatives(
                subject=CONTEXT["title"], body="text only", from_email="b@example.com",
                to=["u@example.com"])])

    # then the check says so
    with pytest.raises(RuntimeError, match="not the rendered template"):
        check_samples(sink.json("/_samples"), CONTEXT["title"])
    with pytest.raises(RuntimeError, match="no sample"):
        check_samples([], CONTEXT["title"])


def test_the_same_message_id_twice_is_a_duplicate():
    assert duplicates([[1.0, "<a@x>"], [1.1, "<b@x>"], [1.2, "<a@x>"]]) == 1


def test_the_baseline_sends_one_message_per_connection_with_the_rendered_parts(sink):
    # given the baseline asked for 5 messages, from number 10
    rendered = _rendered()
    spec = {"n": 5, "offset": 10, "subject": rendered.subject, "text": rendered.text,
            "html": rendered.html}
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "EMAIL_URL": f"smtp://127.0.0.1:{sink.port}"}
    out = subprocess.run([sys.executable, "-m", "bench.bare_email", json.dumps(spec)],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)

    # then it says it sent 5, and the sink got 5 distinct messages on 5 connections
    assert json.loads(out.stdout.strip().splitlines()[-1])["sent"] == 5
    stats = sink.json("/_stats")
    records = sink.json("/_records")
    assert stats["count"] == 5 and stats["connections"] == 5
    assert duplicates(records) == 0 and all(r[1] for r in records)
    assert check_samples(sink.json("/_samples"), rendered.subject) == 1


def test_the_report_sets_emails_against_send_mail_and_shows_the_inbox_rate():
    # given a report with the emails scenario's figures
    run = {"sends": 10, "recipients_per_send": 1000, "emails": 10_000, "via": "service",
           "elapsed_s": 20.0, "received_per_s": 520.0, "worker_cpu_ms_per_email": 1.2,
           "baseline_per_s": 200.0}
    report = {"date": "2026-11-28T18:00:00+00:00", "mode": "full",
              "machine": {"cpus": 2, "python": "3.11", "postgres": "15", "redis": "7"},
              "results": {
                  "emails_1w": {**run, "workers": 1, "per_s": 400.0, "ratio": 2.0,
                                "met": False, "accepted_to_recorded_ms": {
                                    "p50": 120.5, "p99": 300.0, "max": 410.2}},
                  "emails_2w": {**run, "workers": 2, "per_s": 600.0, "ratio": 3.0, "met": True},
                  "inbox": {"recipients": 1000, "workers": 2, "via": "service", "per_s": 1500.0,
                            "elapsed_s": 0.67, "rounds_per_s": [1400.0, 1500.0, 1600.0]}}}

    # then each worker count is a row against send_mail, with its ratio and verdict
    lines = table(report).splitlines()
    [one] = [line for line in lines if "1 worker(s) of the notifications profile" in line]
    [two] = [line for line in lines if "2 worker(s) of the notifications profile" in line]
    assert "400 emails/s" in one and "2.00x" in one and "NO" in one
    assert "200 emails/s Django send_mail, a connection per message" in one
    assert "accepted -> recorded p50 120.5 ms, max 410.2 ms" in one
    assert "accepted -> recorded" not in two  # a report from before the figure
    assert "600 emails/s" in two and "3.00x" in two and "yes" in two
    [inbox] = [line for line in lines if "in-app" in line]
    assert "1,500 notifications/s" in inbox and "1,400, 1,500, 1,600/s" in inbox

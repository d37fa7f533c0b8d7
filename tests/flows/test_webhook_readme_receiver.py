"""The README's receiver example works: the very code block, run as a process, verifies a real
delivery from a real worker, refuses a forged one, and acts once on a message sent twice."""

import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from django.urls import reverse
from standardwebhooks import Webhook

from domain.notifications.models import Delivery, DeliveryStatus
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    found = re.search(r"<!-- receiver-example -->\n```python\n(.*?)```", README.read_text(),
                      re.S)
    assert found, "README.md lost its receiver example (marker: receiver-example)"
    return found.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def test_the_readme_receiver_verifies_and_deduplicates(celery_worker_thread, client_all,
                                                       tmp_path):
    # given an endpoint, and the README's receiver running with its secret
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hooks"
    created = client_all.post(reverse("webhook-endpoint-list"),
                              {"url": url, "event_types": ["demo.ping"]}, format="json")
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    script = tmp_path / "receiver.py"
    script.write_text(_example())
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, str(script)], stdout=sink, stderr=subprocess.STDOUT,
            env={**os.environ, "CONVEYOR_WEBHOOK_SECRET": secret, "PORT": str(port)})
    try:
        wait_for(lambda: _listening(port), timeout=15, message="the README receiver")

        # when an event is published
        published = client_all.post(reverse("event-publish"), {
            "type": "demo.ping", "payload": {"message": "from the readme"}}, format="json")
        assert published.status_code == 202, published.content

        # then the delivery is delivered (the receiver answered 204 after verifying) and the
        # receiver printed it
        wait_for(lambda: Delivery.objects.filter(
            message__event_id=published.json()["id"], status=DeliveryStatus.DELIVERED).exists(),
            message="the delivery")
        wait_for(lambda: "from the readme" in out.read_text(), timeout=5,
                 message="the receiver's output")
        assert out.read_text().count("demo.ping") == 1

        # and a forged request is refused, and the same signed message twice is acted on once
        body = '{"type": "demo.ping", "timestamp": "2026-11-28T09:00:00Z", "data": {"n": 2}}'
        now = datetime.now(UTC)
        headers = {"webhook-id": "msg_readme_twice",
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(secret).sign("msg_readme_twice", now, body),
                   "content-type": "application/json"}
        forged = {**headers, "webhook-signature": Webhook(
            "whsec_" + "A" * 43 + "=").sign("msg_readme_twice", now, body)}
        assert requests.post(url, data=body, headers=forged, timeout=5).status_code == 400
        assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 204
        assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 204
        time.sleep(0.2)
        assert out.read_text().count("{'n': 2}") == 1
    finally:
        process.terminate()
        process.wait(timeout=10)

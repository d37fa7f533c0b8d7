"""The webhook baseline: what a user would write with Celery alone, one task per delivery that
signs the body with `standardwebhooks` and POSTs it with `requests`.

bench/bare.py's app settings (same broker, serializer, acknowledgement mode and prefetch); the
suite starts it on the default pool, prefork, with concurrency = CPUs (2). No Django, no
database, no attempt record: only the send. Each process keeps one `requests.Session`
(keep-alive), which only makes the baseline faster than `requests.post` per call.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import requests
from celery import Celery
from standardwebhooks import Webhook

from bench.bare import BARE_CONF

app = Celery("bare_webhook", broker=os.environ["BENCH_BROKER_URL"])
app.conf.update(BARE_CONF, task_default_queue="bare_webhook")

_session: requests.Session | None = None


@app.task(name="bench.webhook_post")
def post(url: str, secret: str, message_id: str, body: str) -> None:
    global _session
    if _session is None:  # made in the pool process, after the fork
        _session = requests.Session()
    now = datetime.now(UTC)
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
        "content-type": "application/json",
    }
    response = _session.post(url, data=body.encode(), headers=headers, timeout=(5, 15),
                             allow_redirects=False)
    response.raise_for_status()

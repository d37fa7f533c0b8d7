"""The `webhooks` scenario: signed webhook deliveries per second, with their rows, against a
bare Celery task posting the same body with `requests`; and publish -> received latency.

- **Receiver**: bench/receiver.py in its own process, answering 200 after 50 ms, with
  `webhook_endpoints` endpoints registered on it under different paths (`/hook/<n>`), all
  subscribed to `bench.webhook` (bench/webhook_event.py: an event type with no handler of its
  own, so the webhook fan-out is the only work an event makes). The workers run with
  WEBHOOK_ALLOWED_NETWORKS=127.0.0.1/32 (bench/stack.py).
- **Conveyor**: the `notifications` profile's worker command (workers/profiles.py: a pool of
  threads, one asyncio sender per process), 1 process and then 2, started before the load.
  `webhook_events` events go through the batch endpoint (500 a request); each fans out to
  every endpoint. The figure is deliveries from the first to the last request the receiver
  got; it waits until each delivery is `delivered` with exactly one attempt row, the receiver
  counted each (message, endpoint) once, and a sample of the requests verified with its
  endpoint's secret (`standardwebhooks`). Also reported: the same span read from the rows
  (first attempt -> last `delivered_at`), end to end from the first publish, and the fan-out
  (first fan-out job started -> last finished, deliveries made a second).
- **Baseline**: bench/bare_webhook.py, one Celery task per delivery that signs and POSTs
  the same body with `requests`, prefork with concurrency = CPUs, to the same receiver and
  paths; the same span (first to last request received).
- **Latency**: single publishes at a steady rate (open loop) for `webhook_latency_seconds`,
  at half the best delivery rate measured (events/s = that / endpoints), with the faster
  worker setup; each delivery's arrival at the receiver minus its event's `occurred_at` (the
  load generator's send time), joined by `webhook-id`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bench.stack import (
    BIN,
    ROOT,
    HelperProcess,
    free_port,
    start_notifications_worker,
    wait_until,
)

if TYPE_CHECKING:
    from bench.run import Suite

EVENT_TYPE = "bench.webhook"
BATCH = 500  # events a batch request


def payload(n: int) -> dict:
    """A small order-like payload, as a webhook typically carries (about 130 bytes)."""
    return {"order_id": f"ord_{n:08d}", "amount": 12.5 + n % 100, "currency": "EUR",
            "items": 1 + n % 7, "customer": f"cus_{n % 997:05d}"}


class ReceiverClient(HelperProcess):
    """bench/receiver.py, started by the suite's stack; its control requests."""

    name, module = "receiver", "bench.receiver"

    def __init__(self, suite: Suite, delay: float = 0.05) -> None:
        self.port = free_port()
        super().__init__(suite, {"port": self.port, "delay": delay, "sample_every": 50,
                                 "max_samples": 40}, self.port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def verify_samples(samples: list[dict], secrets: dict[str, str]) -> int:
    """Check each sampled request's signature with its endpoint's secret (by path); answers
    how many verified, and raises if one did not."""
    from standardwebhooks import Webhook

    if not samples:
        raise RuntimeError("webhooks: the receiver kept no sample to verify")
    for sample in samples:
        secret = secrets.get(sample["path"])
        if secret is None:
            raise RuntimeError(f"webhooks: a request to an unknown path {sample['path']}")
        Webhook(secret).verify(sample["body"], sample["headers"])  # raises if it does not
    return len(samples)


def arrival_span(records: list[list]) -> tuple[float, float]:
    """(first, last) arrival time of a run's requests."""
    times = [r[0] for r in records]
    return min(times), max(times)


def duplicates(records: list[list]) -> int:
    """Requests beyond the first for the same (webhook-id, path): sent twice."""
    return len(records) - len({(r[1], r[2]) for r in records})


def latencies_ms(records: list[list], published: dict[str, float]) -> list[float]:
    """Each request's arrival minus its message's publish time (epoch seconds, by
    webhook-id), sorted; requests of unknown messages are left out."""
    return sorted((at - published[mid]) * 1000 for at, mid, _ in records if mid in published)


def _pct(values: list[float], q: float) -> float:
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


class WebhooksScenario:
    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.stack = suite.stack
        self.cfg = suite.cfg
        self.workers: list = []

    # --- setup ---------------------------------------------------------------------------

    def setup(self) -> None:
        from django.db import connection

        from domain.notifications.services import endpoint_create

        self.receiver = ReceiverClient(self.suite)
        self.endpoints = []
        for n in range(self.cfg["webhook_endpoints"]):
            endpoint = endpoint_create(url=self.receiver.url(f"/hook/{n}"), api_key=None,
                                       event_types=[EVENT_TYPE],
                                       description=f"bench receiver {n}")
            self.endpoints.append(endpoint)
        self.secrets = {f"/hook/{n}": e.secret for n, e in enumerate(self.endpoints)}
        connection.close()
        # gunicorn's processes read who subscribes at most WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS
        # ago (1 s by default).
        time.sleep(1.5)

    def teardown(self) -> None:
        from django.db import connection

        from domain.notifications.models import WebhookEndpoint

        for proc in self.workers:
            self.stack.stop(proc)
        self.workers = []
        WebhookEndpoint.objects.filter(pk__in=[e.pk for e in self.endpoints]).delete()
        connection.close()
        self.stack.stop(self.receiver.proc)

    def _start_worker(self):
        proc = start_notifications_worker(self.stack, f"notifications-{len(self.workers) + 1}")
        self.workers.append(proc)
        return proc

    def _reset(self) -> None:
        self.suite.reset()
        self.receiver.reset()

    # --- the scenario ---------------------------------------------------------------------

    def run(self, port: int) -> None:
        from bench.run import log

        results = self.suite.results
        self.setup()
        try:
            runs = {}
            for n_workers in (1, 2):
                while len(self.workers) < n_workers:
                    self._start_worker()
                self.warm_up(port)
                runs[n_workers] = self.conveyor(port, n_workers)
                log(f"webhooks: {n_workers} worker(s): {runs[n_workers]['per_s']:,.0f} "
                    "deliveries/s")
            best = max(runs, key=lambda n: runs[n]["per_s"])
            while len(self.workers) > best:
                self.stack.stop(self.workers.pop())
            latency = self.latency(port, runs[best]["per_s"], best)
            for proc in self.workers:
                self.stack.stop(proc)
            self.workers = []
            self._reset()
            bare = self.baseline()
        finally:
            self.teardown()
        self.suite.reset()
        goal_x = 5
        for n_workers, r in runs.items():
            r.update({"baseline_per_s": bare["per_s"],
                      "ratio": _ratio(r["per_s"], bare["per_s"]),
                      "goal": f">= 1,000 deliveries/s and >= {goal_x}x bare Celery + requests",
                      "met": r["per_s"] >= 1000 and r["per_s"] >= goal_x * bare["per_s"]})
            results[f"webhooks_{n_workers}w"] = r
        results["webhooks_bare"] = bare
        results["webhooks_latency"] = latency

    def warm_up(self, port: int, events: int = 100) -> None:
        """A first round, not measured: a worker process's first batches pay for what it
        sets up once (connections, the sender's loop and session, imports)."""
        from bench.run import loadgen

        self._reset()
        body = json.dumps({"events": [{"type": EVENT_TYPE, "payload": payload(i)}
                                      for i in range(events)]})
        self.suite._check(loadgen(self.stack, {
            "port": port, "connections": 1, "duration": 60, "requests": 1, "method": "POST",
            "path": "/api/v1/events/batch", "body": body, "headers": self.suite.headers()}),
            "webhooks warm-up")
        self._wait_received(events * len(self.endpoints), timeout=120)

    def conveyor(self, port: int, n_workers: int) -> dict:
        """`webhook_events` events through the batch endpoint, fanned out to every endpoint
        and delivered by `n_workers` notifications worker processes (running already)."""
        from bench.run import loadgen, log

        m, n = self.cfg["webhook_events"], len(self.endpoints)
        expected = m * n
        self._reset()
        log(f"webhooks: {m} events x {n} endpoints = {expected} deliveries, {n_workers} "
            "notifications worker(s)")
        body = json.dumps({"events": [{"type": EVENT_TYPE, "payload": payload(i)}
                                      for i in range(BATCH)]})
        publish = loadgen(self.stack, {
            "port": port, "connections": 2, "duration": 600, "requests": m // BATCH,
            "method": "POST", "path": "/api/v1/events/batch", "body": body,
            "headers": self.suite.headers()})
        self.suite._check(publish, "webhooks publish")
        self._wait_received(expected, timeout=max(120, expected / 50))
        rows = self._check_rows(expected)
        time.sleep(0.5)  # a duplicate send would arrive by now
        records = self.receiver.records()
        if len(records) != expected or duplicates(records):
            raise RuntimeError(f"webhooks: the receiver got {len(records)} requests "
                               f"({duplicates(records)} duplicates) for {expected} deliveries")
        verified = verify_samples(self.receiver.samples(), self.secrets)
        first, last = arrival_span(records)
        span = last - first
        return {
            "workers": n_workers, "endpoints": n, "events": m, "deliveries": expected,
            "per_s": round(expected / span, 1), "elapsed_s": round(span, 2),
            "rows_per_s": round(expected / rows["span_s"], 1), "rows_span_s": rows["span_s"],
            "end_to_end_per_s": round(expected / (last - publish["started_at"]), 1),
            "end_to_end_s": round(last - publish["started_at"], 2),
            "publish_s": publish["elapsed_s"], "fanout": rows["fanout"],
            "signatures_verified": verified,
        }

    def _wait_received(self, expected: int, timeout: float) -> None:
        state = {"count": -1, "since": time.monotonic()}

        def received() -> bool:
            count = self.receiver.stats()["count"]
            if count != state["count"]:
                state.update(count=count, since=time.monotonic())
            elif time.monotonic() - state["since"] > 60:
                raise RuntimeError(f"webhooks: stuck at {count}/{expected} received for 60 s; "
                                   f"see {self.stack.dir}")
            return count >= expected

        wait_until(received, timeout, f"{expected} webhook requests", interval=0.2)

    def _check_rows(self, expected: int) -> dict:
        """Every delivery `delivered` with one attempt (waiting for the last batches'
        bookkeeping); the span from the first attempt to the last delivery, and the fan-out's."""
        from django.db import connection
        from django.db.models import Count, Max, Min

        from domain.jobs.models import Job
        from domain.notifications.models import Delivery, DeliveryAttempt, DeliveryStatus

        def recorded() -> bool:
            return Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() >= expected

        wait_until(recorded, 120, f"{expected} deliveries recorded delivered", interval=0.2)
        deliveries = Delivery.objects.aggregate(n=Count("id"), last=Max("delivered_at"),
                                                attempts=Max("attempts"))
        attempts = DeliveryAttempt.objects.aggregate(n=Count("id"), first=Min("at"),
                                                     deliveries=Count("delivery", distinct=True))
        if not (deliveries["n"] == attempts["n"] == attempts["deliveries"] == expected
                and deliveries["attempts"] == 1):
            raise RuntimeError(f"webhooks: {deliveries} deliveries and {attempts} attempts for "
                               f"{expected} expected, each with one attempt")
        fan = Job.objects.filter(kind="webhook_fanout").aggregate(
            n=Count("id"), first=Min("started_at"), last=Max("finished_at"))
        connection.close()
        fan_span = (fan["last"] - fan["first"]).total_seconds()
        return {"span_s": round((deliveries["last"] - attempts["first"]).total_seconds(), 2),
                "fanout": {"jobs": fan["n"], "span_s": round(fan_span, 2),
                           "deliveries_made_per_s": round(expected / fan_span, 1)}}

    def latency(self, port: int, max_rate: float, n_workers: int) -> dict:
        """Single publishes, open loop, at half `max_rate` deliveries/s; publish -> received."""
        from django.db import connection

        from bench.run import loadgen, log
        from domain.events.models import Event
        from domain.notifications.deliveries import message_id_for_event

        n = len(self.endpoints)
        rate = max(1.0, round(max_rate / 2 / n, 1))
        seconds = self.cfg["webhook_latency_seconds"]
        self._reset()
        log(f"webhooks latency: {rate:g} events/s x {n} endpoints for {seconds}s, "
            f"{n_workers} worker(s)")
        body = json.dumps({"type": EVENT_TYPE, "occurred_at": "{now}",
                           "payload": {**payload(0), "order_id": "ord_{seq}"}})
        run = loadgen(self.stack, {
            "port": port, "connections": 16, "rate": rate, "duration": seconds,
            "method": "POST", "path": "/api/v1/events", "body": body,
            "headers": self.suite.headers()})
        self.suite._check(run, "webhooks latency")
        expected = run["ok"] * n
        self._wait_received(expected, timeout=120)
        time.sleep(0.5)
        records = self.receiver.records()
        published = {message_id_for_event(pk): occurred.timestamp()
                     for pk, occurred in Event.objects.values_list("id", "occurred_at")}
        stages = self._stages()
        connection.close()
        samples = latencies_ms(records, published)
        if len(samples) != expected:
            raise RuntimeError(f"webhooks latency: {len(samples)} requests joined to their "
                               f"event, {expected} expected")
        return {"events_per_s": rate, "deliveries_per_s": round(rate * n, 1),
                "workers": n_workers, "seconds": seconds, "samples": len(samples),
                "p50_ms": round(_pct(samples, 50), 1), "p99_ms": round(_pct(samples, 99), 1),
                "max_ms": round(samples[-1], 1), "http_p99_ms": run["p99_ms"],
                "late_starts": run["late_starts"], "receiver_delay_ms": 50, "stages": stages,
                "goal": "none (a measurement)", "met": None}

    @staticmethod
    def _stages() -> dict:
        """Where a delivery's time went, from the rows (p50 and p99, ms): publish (the
        event's occurred_at) -> its fan-out job started; fan-out started -> the delivery's job
        handed to the broker; handed over -> claimed by a worker; claimed -> request sent."""
        from django.db import connection

        from domain.events.models import Event
        from domain.jobs.models import Job
        from domain.notifications.models import Delivery, DeliveryAttempt, Message

        t = {m: connection.ops.quote_name(m._meta.db_table)
             for m in (Event, Job, Delivery, DeliveryAttempt, Message)}
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT extract(epoch FROM fj.started_at - e.occurred_at), "  # noqa: S608 - the models' own table names
                "extract(epoch FROM dj.enqueued_at - fj.started_at), "
                "extract(epoch FROM dj.started_at - dj.enqueued_at), "
                "extract(epoch FROM a.at - dj.started_at) "
                f"FROM {t[Event]} e JOIN {t[Job]} fj ON fj.event_id = e.id "
                "AND fj.kind = 'webhook_fanout' "
                f"JOIN {t[Message]} m ON m.event_id = e.id "
                f"JOIN {t[Delivery]} d ON d.message_id = m.id "
                f"JOIN {t[Job]} dj ON dj.id = d.job_id "
                f"JOIN {t[DeliveryAttempt]} a ON a.delivery_id = d.id")
            rows = cursor.fetchall()
        out = {}
        for i, name in enumerate(("publish_to_fanout_started", "fanout_to_delivery_enqueued",
                                  "enqueued_to_claimed", "claimed_to_sent")):
            values = sorted(float(r[i]) * 1000 for r in rows if r[i] is not None)
            if values:
                out[name] = {"p50_ms": round(_pct(values, 50), 1),
                             "p99_ms": round(_pct(values, 99), 1)}
        return out

    def baseline(self) -> dict:
        """bench/bare_webhook.py: `webhook_baseline` tasks, one per delivery, round-robin over
        the endpoints, drained by prefork with concurrency = CPUs."""
        from bench.run import log
        from domain.notifications.signing import message_body

        k = self.cfg["webhook_baseline"]
        cpus = os.cpu_count() or 2
        log(f"webhooks baseline: {k} bare Celery tasks posting with requests, prefork -c {cpus}")
        worker = self.stack.start_worker("bare_webhook", [
            "celery", "-A", "bench.bare_webhook", "worker", "-l", "INFO", "-Q", "bare_webhook",
            "-c", str(cpus), "-P", "prefork", "-n", f"bare-webhook-{uuid.uuid4().hex[:6]}@%h"])
        paths = list(self.secrets)
        now = datetime.now(UTC)
        sends = [[self.receiver.url(paths[i % len(paths)]), self.secrets[paths[i % len(paths)]],
                  f"msg_{uuid.uuid4().hex}",
                  message_body(type=EVENT_TYPE, timestamp=now, data=payload(i)).decode()]
                 for i in range(k)]
        spec = self.stack.dir / "bare_webhook_sends.json"
        spec.write_text(json.dumps(sends))
        try:
            subprocess.run(
                [str(BIN / "python"), "-c",
                 "import json, sys; from bench.bare_webhook import post; "
                 "[post.delay(*s) for s in json.load(open(sys.argv[1]))]", str(spec)],
                cwd=ROOT, env=self.stack.env, check=True, capture_output=True, text=True)
            self._wait_received(k, timeout=max(120, k / 5))
            time.sleep(0.5)
        finally:
            self.stack.stop(worker)
            spec.unlink()
        records = self.receiver.records()
        if len(records) != k or duplicates(records):
            raise RuntimeError(f"webhooks baseline: {len(records)} requests for {k} tasks")
        verified = verify_samples(self.receiver.samples(), self.secrets)
        first, last = arrival_span(records)
        return {"deliveries": k, "per_s": round(k / (last - first), 1),
                "elapsed_s": round(last - first, 2), "concurrency": cpus,
                "signatures_verified": verified}


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else 0.0

"""The `emails` scenario: emails per second to a local SMTP server, each with its delivery row
and its attempt row, against Django's `send_mail` once per message; and in-app notifications
written per second.

- **SMTP server**: bench/smtp_sink.py in its own process (aiosmtpd, accepting every message,
  recording its arrival and Message-ID). The workers send to it through EMAIL_URL
  (smtp://127.0.0.1:<port>, the project's SMTP backend).
- **Conveyor**: the `notifications` profile's worker command (workers/profiles.py: a pool of
  threads), 1 process and then 2, started before the load. `email_sends` notifications of
  `email_recipients` recipients each (the security_alert template, a text and an HTML part,
  email channel only) are sent one after the other through POST /api/v1/notifications when
  the project has that route, through the sending service (domain/notifications/sending.py,
  the function the API calls) otherwise; the report says which. Each recipient's delivery is
  a job; jobs travel 100 to a message, and a message's emails share one SMTP connection. The
  figure is emails from the first send to the last delivery's `delivered_at`; it waits until
  every delivery is `delivered` with exactly one attempt row, and the server received each
  delivery's Message-ID once (a sample checked for both parts). Also reported: the server's
  span (first to last email received), the sends' own time, and the CPU the worker and the
  server processes used per email.
- **Baseline**: bench/bare_email.py, Django's `send_mail` once per message (a new connection
  each, as `send_mail` does) to the same server, with the same rendered subject and parts, in
  as many processes as the machine has CPUs; the server's span (first to last received).
- **In-app**: `inbox_rounds` sends of `inbox_recipients` recipients, in_app channel only,
  with the faster worker setup; each from the send until the last delivery is `delivered`
  (its inbox item written in the same transaction); the median round.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import os
import subprocess
import time
import uuid
from typing import TYPE_CHECKING

import psutil

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

TEMPLATE = "security_alert"
CONTEXT = {"title": "New sign-in to your account",
           "message": "Someone signed in to your account from a new device. If it was you, "
                      "there is nothing to do; if not, change your password now.",
           "ip_address": "203.0.113.7", "occurred_at": "2026-11-28T09:00:00Z"}
NOTIFICATION_TABLES = ("notifications_notification", "notifications_inboxitem",
                       "notifications_inboxcounter", "notifications_digest")


class SinkClient(HelperProcess):
    """bench/smtp_sink.py, started by the suite's stack; its control requests."""

    name, module = "smtp_sink", "bench.smtp_sink"

    def __init__(self, suite: Suite) -> None:
        self.port = free_port()
        control_port = free_port()
        super().__init__(suite, {"port": self.port, "control_port": control_port,
                                 "sample_every": 200, "max_samples": 20}, control_port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return cpu_seconds([self.proc.pid])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of processes and their children so far."""
    total = 0.0
    for pid in pids:
        process = psutil.Process(pid)
        for p in (process, *process.children(recursive=True)):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def duplicates(records: list[list]) -> int:
    """Emails beyond the first with the same Message-ID: sent twice."""
    return len(records) - len({r[1] for r in records})


def check_samples(samples: list[str], subject: str) -> int:
    """Each kept email is the rendered template: its subject, a text and an HTML part.
    Answers how many were checked; raises on the first that is not."""
    if not samples:
        raise RuntimeError("emails: the SMTP sink kept no sample to check")
    for raw in samples:
        message = email.message_from_string(raw, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        if str(message["Subject"]) != subject or text is None or html is None \
                or html.get_content_type() != "text/html":
            raise RuntimeError(f"emails: a received email is not the rendered template:\n"
                               f"{raw[:2000]}")
    return len(samples)


def recipients(prefix: str, n: int, with_email: bool = True) -> list[dict]:
    return [{"id": f"{prefix}-{i}", **({"email": f"{prefix}.{i}@example.com"}
                                       if with_email else {})} for i in range(n)]


def _accepted_to_recorded() -> dict:
    """How long each email was accepted by the server and not yet recorded (ms): from the
    end of its send (the attempt's start plus its latency) to its delivery's `delivered_at`,
    the time its batch's record was written (the record commits a moment later). A worker
    killed in that span sends the email again (domain/notifications/emails.py, the window)."""
    from django.db import connection

    from domain.notifications.models import Delivery, DeliveryAttempt

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM d.delivered_at - a.at) * 1000 "  # noqa: S608 - the models' own table names
            "- COALESCE(a.latency_ms, 0) "
            f"FROM {connection.ops.quote_name(Delivery._meta.db_table)} d "
            f"JOIN {connection.ops.quote_name(DeliveryAttempt._meta.db_table)} a "
            "ON a.delivery_id = d.id WHERE d.channel = 'email' AND d.delivered_at IS NOT NULL")
        values = sorted(float(row[0]) for row in cursor.fetchall())
    if not values:
        return {}
    return {"p50": round(_pct(values, 50), 1), "p99": round(_pct(values, 99), 1),
            "max": round(values[-1], 1)}


def _pct(values: list[float], q: float) -> float:
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else 0.0


class EmailsScenario:
    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.stack = suite.stack
        self.cfg = suite.cfg
        self.workers: list = []
        self.port: int | None = None
        self.sends = 0

    # --- setup ---------------------------------------------------------------------------

    def setup(self, port: int) -> None:
        from django.urls import Resolver404, resolve

        self.port = port
        self.sink = SinkClient(self.suite)
        # The workers started from here on send to the sink (the stack's environment is
        # every process's); gunicorn, started before, sends no email.
        self.stack.env["EMAIL_URL"] = self.sink.url
        try:
            # Every unknown path under /api/ resolves to the JSON 404 view (api-not-found).
            found = resolve("/api/v1/notifications").url_name != "api-not-found"
        except Resolver404:
            found = False
        self.via = "api" if found else "service"

    def teardown(self) -> None:
        for proc in self.workers:
            self.stack.stop(proc)
        self.workers = []
        self.stack.env.pop("EMAIL_URL", None)
        self.stack.stop(self.sink.proc)

    def _start_worker(self):
        proc = start_notifications_worker(self.stack,
                                          f"email-notifications-{len(self.workers) + 1}")
        self.workers.append(proc)
        return proc

    def _reset(self) -> None:
        from django.db import connection

        self.suite.reset()
        with connection.cursor() as cur:
            cur.execute(f"TRUNCATE {', '.join(NOTIFICATION_TABLES)} CASCADE")
        connection.close()
        self.sink.reset()

    # --- sending ---------------------------------------------------------------------------

    def send(self, people: list[dict], channels: list[str]) -> None:
        """One notification to `people` on `channels`, through the API or the service."""
        self.sends += 1
        if self.via == "api":
            body = json.dumps({"template": TEMPLATE, "context": CONTEXT, "recipients": people,
                               "channels": channels}).encode()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                conn.request("POST", "/api/v1/notifications", body=body, headers={
                    **self.suite.headers(), "Content-Type": "application/json",
                    "Idempotency-Key": f"bench-emails-{uuid.uuid4().hex}"})
                answer = conn.getresponse()
                content = answer.read()
            finally:
                conn.close()
            if answer.status != 202:
                raise RuntimeError(f"emails: POST /api/v1/notifications answered "
                                   f"{answer.status}: {content[:500]!r}")
            return
        from django.db import connection

        from domain.notifications.sending import notification_send, notification_validate

        draft = notification_validate(template=TEMPLATE, context=CONTEXT, recipients=people,
                                      channels=channels)
        notification_send(draft=draft, correlation_id=f"bench-emails-{self.sends}")
        connection.close()

    def _wait_delivered(self, channel: str, expected: int, timeout: float) -> None:
        """Until `expected` deliveries of `channel` are delivered; raises if one failed or
        nothing moved for 60 s."""
        from django.db import connection
        from django.db.models import Count

        from domain.notifications.models import Delivery, DeliveryStatus

        state = {"count": -1, "since": time.monotonic()}

        def done() -> bool:
            counts = dict(Delivery.objects.filter(channel=channel).values_list("status")
                          .annotate(n=Count("id")))
            connection.close()
            bad = {s: n for s, n in counts.items()
                   if s not in (DeliveryStatus.DELIVERED, DeliveryStatus.PENDING,
                                DeliveryStatus.SENDING)}
            if bad:
                raise RuntimeError(f"emails: {channel} deliveries {counts}; see "
                                   f"{self.stack.dir}")
            count = counts.get(DeliveryStatus.DELIVERED, 0)
            if count != state["count"]:
                state.update(count=count, since=time.monotonic())
            elif time.monotonic() - state["since"] > 60:
                raise RuntimeError(f"emails: stuck at {count}/{expected} {channel} deliveries "
                                   f"delivered for 60 s; see {self.stack.dir}")
            return count >= expected

        wait_until(done, timeout, f"{expected} {channel} deliveries delivered", interval=0.2)

    def _rows(self, channel: str, expected: int) -> dict:
        """Every delivery of `channel` delivered once with one attempt row: the first
        attempt and the last `delivered_at` (epoch), and the Message-IDs the emails carry."""
        from django.conf import settings
        from django.db import connection
        from django.db.models import Count, Max, Min

        from domain.notifications.models import Delivery, DeliveryAttempt

        deliveries = Delivery.objects.filter(channel=channel)
        agg = deliveries.aggregate(n=Count("id"), last=Max("delivered_at"),
                                   most=Max("attempts"), least=Min("attempts"))
        attempts = DeliveryAttempt.objects.filter(delivery__channel=channel).aggregate(
            n=Count("id"), first=Min("at"), deliveries=Count("delivery", distinct=True))
        ids = window = None
        if channel == "email":
            domain = settings.EMAIL_MESSAGE_ID_DOMAIN
            ids = {f"<{pk}@{domain}>" for pk in deliveries.values_list("id", flat=True)}
            window = _accepted_to_recorded()
        connection.close()
        if not (agg["n"] == attempts["n"] == attempts["deliveries"] == expected
                and agg["most"] == agg["least"] == 1):
            raise RuntimeError(f"emails: {agg} {channel} deliveries and {attempts} attempts "
                               f"for {expected} expected, each with one attempt")
        return {"first_attempt": attempts["first"].timestamp(),
                "last_delivered": agg["last"].timestamp(), "message_ids": ids,
                "window": window}

    # --- the scenario ---------------------------------------------------------------------

    def run(self, port: int) -> None:
        from bench.run import log

        results = self.suite.results
        self.setup(port)
        try:
            runs = {}
            for n_workers in (1, 2):
                while len(self.workers) < n_workers:
                    self._start_worker()
                self.warm_up()
                runs[n_workers] = self.conveyor(n_workers)
                log(f"emails: {n_workers} worker(s): {runs[n_workers]['per_s']:,.0f} emails/s")
            best = max(runs, key=lambda n: runs[n]["per_s"])
            while len(self.workers) > best:
                self.stack.stop(self.workers.pop())
            inbox = self.inbox(best)
            for proc in self.workers:
                self.stack.stop(proc)
            self.workers = []
            self._reset()
            bare = self.baseline()
        finally:
            self.teardown()
        self.suite.reset()
        for n_workers, r in runs.items():
            r.update({"baseline_per_s": bare["per_s"],
                      "ratio": _ratio(r["per_s"], bare["per_s"]),
                      "goal": ">= 500 emails/s", "met": r["per_s"] >= 500})
            results[f"emails_{n_workers}w"] = r
        results["emails_bare"] = bare
        results["inbox"] = inbox

    def warm_up(self, n: int = 200) -> None:
        """A first send, not measured: a worker process's first batches pay for what it sets
        up once (connections, imports, the template engine's loaded templates)."""
        self._reset()
        self.send(recipients(f"warm-{uuid.uuid4().hex[:6]}", n), ["email"])
        self._wait_delivered("email", n, timeout=120)

    def conveyor(self, n_workers: int) -> dict:
        """`email_sends` x `email_recipients` emails, sent by `n_workers` notifications
        worker processes (running already)."""
        from bench.run import log

        sends, per_send = self.cfg["email_sends"], self.cfg["email_recipients"]
        expected = sends * per_send
        self._reset()
        log(f"emails: {sends} sends x {per_send} recipients = {expected} emails, {n_workers} "
            f"notifications worker(s), via the {self.via}")
        worker_pids = [p.pid for p in self.workers]
        cpu_workers, cpu_sink = cpu_seconds(worker_pids), self.sink.cpu_seconds()
        started = time.time()
        for n in range(sends):
            self.send(recipients(f"r{n}-{uuid.uuid4().hex[:6]}", per_send), ["email"])
        sent = time.time()
        self._wait_delivered("email", expected, timeout=max(120, expected / 20))
        cpu_workers = cpu_seconds(worker_pids) - cpu_workers
        cpu_sink = self.sink.cpu_seconds() - cpu_sink
        rows = self._rows("email", expected)
        time.sleep(0.5)  # a duplicate send would have arrived by now
        records = self.sink.records()
        received = {r[1] for r in records}
        if len(records) != expected or duplicates(records) or received != rows["message_ids"]:
            raise RuntimeError(f"emails: the SMTP sink got {len(records)} emails "
                               f"({duplicates(records)} duplicates, "
                               f"{len(rows['message_ids'] - received)} deliveries missing) for "
                               f"{expected} deliveries")
        checked = check_samples(self.sink.samples(), CONTEXT["title"])
        times = sorted(r[0] for r in records)
        span = rows["last_delivered"] - started
        return {
            "workers": n_workers, "sends": sends, "recipients_per_send": per_send,
            "emails": expected, "via": self.via, "per_s": round(expected / span, 1),
            "elapsed_s": round(span, 2), "sends_s": round(sent - started, 2),
            "first_email_after_s": round(times[0] - started, 3),
            "received_per_s": round(expected / (times[-1] - times[0]), 1),
            "received_span_s": round(times[-1] - times[0], 2),
            "worker_cpu_ms_per_email": round(cpu_workers * 1000 / expected, 3),
            "sink_cpu_ms_per_email": round(cpu_sink * 1000 / expected, 3),
            "samples_checked": checked,
            "accepted_to_recorded_ms": rows["window"],
        }

    def inbox(self, n_workers: int) -> dict:
        """`inbox_rounds` sends of `inbox_recipients` recipients, in_app only: the send until
        the last delivery is delivered (its inbox item written with it)."""
        from django.db import connection

        from bench.run import log
        from domain.notifications.models import InboxItem

        n, rounds = self.cfg["inbox_recipients"], self.cfg["inbox_rounds"]
        runs = []
        for round_no in range(1, rounds + 1):
            self._reset()
            log(f"in-app: round {round_no}/{rounds}, one send to {n} recipients, {n_workers} "
                "notifications worker(s)")
            started = time.time()
            self.send(recipients(f"in{round_no}-{uuid.uuid4().hex[:6]}", n, with_email=False),
                      ["in_app"])
            sent = time.time()
            self._wait_delivered("in_app", n, timeout=120)
            rows = self._rows("in_app", n)
            items = InboxItem.objects.count()
            connection.close()
            if items != n:
                raise RuntimeError(f"in-app: {items} inbox items for {n} deliveries")
            span = rows["last_delivered"] - started
            runs.append({"per_s": round(n / span, 1), "elapsed_s": round(span, 3),
                         "send_s": round(sent - started, 3),
                         "written_s": round(rows["last_delivered"] - rows["first_attempt"], 3)})
        median = sorted(runs, key=lambda r: r["per_s"])[(len(runs) - 1) // 2]
        return {**median, "recipients": n, "workers": n_workers, "via": self.via,
                "rounds_per_s": [r["per_s"] for r in runs], "rounds": runs,
                "goal": "none (a measurement)", "met": None}

    def baseline(self) -> dict:
        """bench/bare_email.py in as many processes as CPUs, `email_baseline` messages in
        all, to the same sink: Django's send_mail, one connection per message."""
        from bench.run import log
        from domain.notifications.catalogue import get_template

        k = self.cfg["email_baseline"]
        cpus = os.cpu_count() or 2
        log(f"emails baseline: {k} x Django send_mail (a connection each), {cpus} processes")
        rendered = get_template(TEMPLATE).render(
            CONTEXT, recipient={"id": "base", "email": "base@example.com"},
            extra={"unsubscribe_url": ""})
        share = [k // cpus + (1 if i < k % cpus else 0) for i in range(cpus)]
        cpu_sink = self.sink.cpu_seconds()
        procs = []
        for i, n in enumerate(share):
            spec = {"n": n, "offset": sum(share[:i]), "subject": rendered.subject,
                    "text": rendered.text, "html": rendered.html}
            procs.append(subprocess.Popen(
                [str(BIN / "python"), "-m", "bench.bare_email", json.dumps(spec)], cwd=ROOT,
                env={**self.stack.env, "EMAIL_URL": self.sink.url}, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=max(120, k / 10))
            if proc.returncode != 0:
                raise RuntimeError(f"emails baseline: a sender exited {proc.returncode}:\n"
                                   f"{err[-2000:]}")
            outs.append(json.loads(out.strip().splitlines()[-1]))
        cpu_sink = self.sink.cpu_seconds() - cpu_sink
        time.sleep(0.5)
        records = self.sink.records()
        if len(records) != k or duplicates(records) or sum(o["sent"] for o in outs) != k:
            raise RuntimeError(f"emails baseline: {len(records)} emails received for {k}")
        checked = check_samples(self.sink.samples(), rendered.subject)
        times = sorted(r[0] for r in records)
        started = min(o["started"] for o in outs)
        return {"emails": k, "processes": cpus,
                "per_s": round(k / (times[-1] - times[0]), 1),
                "elapsed_s": round(times[-1] - times[0], 2),
                "from_start_per_s": round(k / (times[-1] - started), 1),
                "sink_cpu_ms_per_email": round(cpu_sink * 1000 / k, 3),
                "samples_checked": checked}

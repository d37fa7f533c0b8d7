"""Email deliveries on real processes: a `celery worker` of the `notifications` profile (its
pool of threads and its concurrency, workers/profiles.py) consuming the `notifications` queue
of the suite's own Redis, sending with the project's SMTP backend (EMAIL_URL in its
environment) to a real SMTP server of the test (aiosmtpd, tests/smtp_sink.py), and killed by
PID (kill -9, its process group).

Where the kill lands is decided, not left to timing: when the server has the message's DATA
and before it answers 250, the sink's `on_data` hook takes a row lock (SELECT … FOR UPDATE,
in a transaction of its own) that the worker's next write must wait for; the test kills the
worker once PostgreSQL shows that write waiting (pg_stat_activity), then lets the lock go.

- **In the window** (the lock on the delivery row): the server accepted the email, and the
  worker's record of it (the attempt row and the delivery's `delivered`, one transaction,
  domain/notifications/emails.py `_record`) never commits. The orphan rescue runs the job
  again and the recipient gets the email a second time, with the same Message-ID
  (`<delivery id>@EMAIL_MESSAGE_ID_DOMAIN`): what the module's docstring promises for that
  window, at least once with a deduplicable id. No third copy comes.
- **After the window** (the lock on the job row): the delivery's record committed, and the
  worker dies before its job's record (and before acknowledging the message). The job runs
  again, finds its delivery delivered and sends nothing: exactly one email.

The leases are short here (JOB_LEASE_SECONDS=3 in the workers, ORPHAN_GRACE_SECONDS=1 in the
test process, which runs the rescue every second as Beat would): the job is back in the queue
about 4 s after the kill. The new worker starts once the killed one's unacknowledged message
is past the visibility timeout (5 s here, CELERY_VISIBILITY_TIMEOUT in the workers), so it
takes that message too and its claim refuses it. Each test takes about 12 s. What each test
measured is printed (`-rP`).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid

import psycopg2
import pytest
from django.conf import settings as django_settings
from django.db import connection

from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.rescue import jobs_rescue_orphans
from domain.notifications.models import (
    AttemptResult,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
)
from domain.notifications.sending import notification_send, notification_validate
from tests.faults.procs import Worker, WorkerFactory, database_url, pending_messages, wait_until
from tests.smtp_sink import Received, SmtpSink
from workers.profiles import PROFILES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.postgres]

PROFILE = PROFILES["notifications"]
ADDRESS = "ada@example.com"
LEASE_SECONDS = 3
GRACE_SECONDS = 1
VISIBILITY_TIMEOUT = 5  # the workers' CELERY_VISIBILITY_TIMEOUT (10 in tests/faults/procs.py)


def _say(title: str, **numbers) -> None:
    print(f"[faults] {title}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


@pytest.fixture
def short_leases(settings):
    """The rescue in this process judges leases the workers took with JOB_LEASE_SECONDS=3."""
    settings.JOB_LEASE_SECONDS = LEASE_SECONDS
    settings.ORPHAN_GRACE_SECONDS = GRACE_SECONDS


def _email_worker(workers: WorkerFactory, sink: SmtpSink) -> Worker:
    """A `celery worker` as the notifications profile runs it, sending email to `sink` through
    the project's SMTP backend (EMAIL_URL=smtp://…, config/settings/base.py); waits until it
    answers a ping."""
    name = f"faults-mail-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    workers.log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", *PROFILE.command(hostname=name),
           "--without-gossip", "--without-mingle", "--without-heartbeat"]
    env = {"EMAIL_URL": f"smtp://{sink.host}:{sink.port}", "EMAIL_TIMEOUT": "10",
           "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
           "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}
    worker = workers._spawn(name, cmd, workers.log_dir / f"{name.split('@')[0]}.log", env)
    workers.wait_ready(worker, 60)
    return worker


def _restart(workers: WorkerFactory, sink: SmtpSink) -> Worker:
    """A new worker, started once the killed worker's unacknowledged message is past the
    workers' visibility timeout (VISIBILITY_TIMEOUT, their CELERY_VISIBILITY_TIMEOUT): Redis
    hands it back at the new worker's start (kombu sweeps again only every 100 s), so both
    of the job's messages, the rescue's and that one, reach the new worker within the test."""
    [first] = sink.received[:1]  # accepted after the killed worker took the message
    visible_at = first.at + VISIBILITY_TIMEOUT + 0.5
    time.sleep(max(0.0, visible_at - time.time()))
    return _email_worker(workers, sink)


def _send_email() -> tuple[Delivery, Job]:
    """A security alert (a required category: nothing can skip it) to ADDRESS, email only,
    through the sending service; its job goes to the broker when the send commits."""
    draft = notification_validate(
        template="security_alert", channels=[Channel.EMAIL],
        context={"title": "New sign-in", "message": "Someone signed in from a new device.",
                 "occurred_at": "2026-11-28T09:00:00Z"},
        recipients=[{"id": "ada", "email": ADDRESS}])
    [delivery] = notification_send(draft=draft).deliveries
    return delivery, Job.objects.get(pk=delivery.job_id)


class RowLock:
    """`SELECT … FOR UPDATE` on one row, from a connection of its own to the test database
    (as the workers see it), taken from the SMTP server's DATA hook and held until released:
    a worker's write of that row waits meanwhile."""

    def __init__(self, which: str) -> None:
        self.which = which  # "delivery": the delivery row; "job": its job's row
        self.conn = psycopg2.connect(database_url())
        self.taken = threading.Event()
        self.row = None

    def on_data(self, received: Received) -> None:
        if self.taken.is_set():
            return  # a later copy: accepted without a lock
        delivery_id = received["X-Conveyor-Delivery"]
        with self.conn.cursor() as cur:
            if self.which == "delivery":
                table, row = Delivery._meta.db_table, delivery_id
            else:
                cur.execute(f"SELECT job_id FROM {Delivery._meta.db_table} WHERE id = %s",  # noqa: S608 - the model's own table
                            [delivery_id])
                table, row = Job._meta.db_table, str(cur.fetchone()[0])
            cur.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [row])  # noqa: S608 - the model's own table
        self.row = row
        self.taken.set()

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def _waiting(pattern: str) -> list[tuple[int, str]]:
    """(backend pid, statement) of the test database's sessions waiting for a lock while
    running a statement that matches `pattern` (SQL LIKE)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE %s", [pattern])
        return cur.fetchall()


def _gone(pids: list[int]) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
        return cur.fetchone()[0] == 0


def _rescue_until_requeued(job: Job, timeout: float) -> bool:
    """Run the orphan rescue every second, as Beat does, until it took the job back."""
    def rescued() -> bool:
        jobs_rescue_orphans()
        return Job.objects.filter(pk=job.pk).exclude(status=JobStatus.RUNNING).exists()
    return wait_until(rescued, timeout, 1.0)


def _messages_taken(worker: Worker) -> int:
    """Email task messages the worker received (claimed or refused), from its log."""
    return sum(1 for line in worker.log().splitlines()
               if "send_emails[" in line and line.rstrip().endswith("received"))


def _job_attempts(job: Job) -> list[str]:
    return list(JobAttempt.objects.filter(job=job).order_by("run", "number", "started_at")
                .values_list("outcome", flat=True))


def _delivery_attempts(delivery: Delivery) -> list[tuple]:
    return list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")
                .values_list("number", "outcome", "smtp_code"))


# The worker's record of a sent batch: one statement inserting the attempt rows and updating
# the deliveries (domain/notifications/fastpaths.py); its INSERT checks the attempt's foreign
# key with a share lock on the delivery row, its UPDATE needs the row.
RECORD_SQL = f'%INSERT INTO "{DeliveryAttempt._meta.db_table}"%'
# The job's record of its success (domain/jobs/fastpaths.py, `_succeed_pg`).
JOB_SUCCEED_SQL = f'%UPDATE "{Job._meta.db_table}" AS j SET status%result = v.result%'  # noqa: S608 - a LIKE pattern, the model's own table


def test_a_worker_killed_after_the_server_accepted_data_sends_the_email_again_with_the_same_message_id(  # noqa: E501
        workers, broker, short_leases):
    with SmtpSink() as sink:
        # given a notifications worker sending to a real SMTP server which, when the email's
        # DATA arrives and before it answers 250, locks the delivery's row: the worker's
        # record of the accepted email will wait for that lock
        lock = RowLock("delivery")
        sink.script(ADDRESS, on_data=lock.on_data)
        first = _email_worker(workers, sink)

        # when an email is sent to ADDRESS through the sending service ...
        start = time.monotonic()
        delivery, job = _send_email()
        # ... the server accepts it, the worker's record waits on the lock, and the worker is
        # killed (kill -9, its process group) before that record could commit
        try:
            assert wait_until(lambda: len(sink.messages_to(ADDRESS)) == 1, 30, 0.05)
            assert wait_until(lambda: _waiting(RECORD_SQL), 30, 0.05), "the record never waited"
            first.kill9()
        finally:
            lock.release()
        killed = time.monotonic()
        after_kill = Delivery.objects.get(pk=delivery.pk)
        rows_after_kill = _delivery_attempts(delivery)
        job_after_kill = Job.objects.get(pk=job.pk)

        # and the orphan rescue runs (every second, as Beat would) until it requeued the job,
        # then a worker starts again
        rescued = _rescue_until_requeued(job, 30)
        rescued_after = time.monotonic() - killed
        assert rescued, Job.objects.filter(pk=job.pk).values().first()
        second = _restart(workers, sink)

        # then the email is sent again and the delivery recorded delivered ...
        assert wait_until(lambda: Delivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.DELIVERED).exists(), 30, 0.1)
        delivered_after = time.monotonic() - killed
        assert wait_until(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.SUCCEEDED)
                          .exists(), 30, 0.1)
        # ... and once every message of the job is consumed (the rescue's, and the killed
        # worker's unacknowledged one, which Redis hands back past the visibility timeout and
        # the new worker's claim refuses), and a second more, no third copy has come
        drained = wait_until(lambda: pending_messages(broker, "notifications") == 0, 30, 0.2)
        time.sleep(1)
        got = sink.messages_to(ADDRESS)
        taken = _messages_taken(second)
        delivery.refresh_from_db()
        job.refresh_from_db()
        expected_id = f"<{delivery.pk}@{django_settings.EMAIL_MESSAGE_ID_DOMAIN}>"
        _say("worker killed between the server's 250 and the delivery's record",
             status_after_kill=after_kill.status, attempt_rows_after_kill=len(rows_after_kill),
             job_after_kill=job_after_kill.status, rescued_after_s=round(rescued_after, 1),
             delivered_after_s=round(delivered_after, 1), broker_drained=drained,
             messages_taken_by_new_worker=taken, emails_received=len(got),
             message_ids=sorted({m["Message-ID"] for m in got}),
             delivery_status=delivery.status, delivery_attempts=delivery.attempts,
             attempt_rows=_delivery_attempts(delivery), job_attempts=_job_attempts(job),
             job_result=job.result, total_s=round(time.monotonic() - start, 1))
        # the kill left the delivery `sending` with no attempt on record, its job running
        assert after_kill.status == DeliveryStatus.SENDING and rows_after_kill == []
        assert job_after_kill.status == JobStatus.RUNNING
        assert drained and taken == 2  # the rescue's message and the restored one
        # the recipient got the email twice, both copies the same message (same Message-ID,
        # same subject and body)
        assert len(got) == 2
        assert [m["Message-ID"] for m in got] == [expected_id, expected_id]
        assert got[0].subject == got[1].subject and got[0].text == got[1].text
        assert [m["X-Conveyor-Delivery"] for m in got] == [str(delivery.pk)] * 2
        # our side knows of one send: the second run's attempt (the first one's row died
        # with the worker's transaction)
        assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1
        assert _delivery_attempts(delivery) == [(1, AttemptResult.DELIVERED, 250)]
        # the job: a `lost` attempt (the rescue's), then the run that succeeded
        assert _job_attempts(job) == [AttemptOutcome.LOST, AttemptOutcome.SUCCEEDED]
        assert job.attempts == 2 and job.result["delivery"] == DeliveryStatus.DELIVERED
        assert second.alive()


def test_a_worker_killed_after_the_delivery_was_recorded_sends_nothing_more(
        workers, broker, short_leases):
    with SmtpSink() as sink:
        # given a notifications worker sending to a real SMTP server which, when the email's
        # DATA arrives, locks the row of the delivery's JOB: the delivery's record (attempt
        # row, `delivered`) commits, and the job's own record of its success waits
        lock = RowLock("job")
        sink.script(ADDRESS, on_data=lock.on_data)
        first = _email_worker(workers, sink)

        # when an email is sent, the delivery's record has committed, the job's record waits,
        # and the worker is killed there (before that record and before it acknowledges the
        # message)
        start = time.monotonic()
        delivery, job = _send_email()
        try:
            assert wait_until(lambda: _waiting(JOB_SUCCEED_SQL), 30, 0.05), \
                "the job's record never waited"
            first.kill9()
            # The dead worker's statement is already in the server, waiting for the lock; a
            # statement outside a transaction that gets its lock runs and commits, client or
            # no client. Ending its session plays the worker dying a moment before it sent
            # that statement, which is the case under test (the job left `running`).
            waiting = [pid for pid, _ in _waiting(f'%"{Job._meta.db_table}"%')]
            with connection.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                            [waiting])
            assert wait_until(lambda: _gone(waiting), 10, 0.05)
        finally:
            lock.release()
        killed = time.monotonic()
        after_kill = Delivery.objects.get(pk=delivery.pk)
        rows_after_kill = _delivery_attempts(delivery)
        job_after_kill = Job.objects.get(pk=job.pk)
        received_at_kill = len(sink.messages_to(ADDRESS))

        # and the orphan rescue runs until it requeued the job, then a worker starts again
        rescued = _rescue_until_requeued(job, 30)
        rescued_after = time.monotonic() - killed
        assert rescued, Job.objects.filter(pk=job.pk).values().first()
        second = _restart(workers, sink)

        # then the job runs again and succeeds, and once every message of the job is consumed
        # and a second more, the server still has exactly one email
        assert wait_until(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.SUCCEEDED)
                          .exists(), 30, 0.1)
        drained = wait_until(lambda: pending_messages(broker, "notifications") == 0, 30, 0.2)
        time.sleep(1)
        got = sink.messages_to(ADDRESS)
        taken = _messages_taken(second)
        delivery.refresh_from_db()
        job.refresh_from_db()
        _say("worker killed after the delivery's record, before the job's",
             received_at_kill=received_at_kill, status_after_kill=after_kill.status,
             attempt_rows_after_kill=rows_after_kill, job_after_kill=job_after_kill.status,
             rescued_after_s=round(rescued_after, 1), broker_drained=drained,
             messages_taken_by_new_worker=taken, emails_received=len(got),
             delivery_status=delivery.status, delivery_attempts=delivery.attempts,
             job_attempts=_job_attempts(job),
             job_result=job.result, total_s=round(time.monotonic() - start, 1))
        # the kill came after the delivery's record: delivered, one attempt; the job running
        assert received_at_kill == 1
        assert after_kill.status == DeliveryStatus.DELIVERED
        assert rows_after_kill == [(1, AttemptResult.DELIVERED, 250)]
        assert job_after_kill.status == JobStatus.RUNNING
        assert drained and taken == 2  # the rescue's message and the restored one
        # the job ran again, found its delivery delivered and sent nothing
        assert len(got) == 1
        assert job.result == {"delivery": DeliveryStatus.DELIVERED, "sent": False,
                              "note": "delivered already; not sent again"}
        assert _job_attempts(job) == [AttemptOutcome.LOST, AttemptOutcome.SUCCEEDED]
        assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1
        assert _delivery_attempts(delivery) == [(1, AttemptResult.DELIVERED, 250)]
        assert second.alive()

"""Each PostgreSQL fast path of the job lifecycle leaves exactly the rows its portable version
(the one SQLite runs) leaves: the same jobs chosen, the same columns written, the same attempt
rows. Twin jobs go one through each version, and the rows are compared column for column."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from domain.jobs import fastpaths
from domain.jobs.models import Job, JobAttempt, JobStatus
from tests.factories import EventFactory, JobFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

NOW = timezone.now()
# Every state a claim must tell apart: (status, run_at, next_retry_at)
STATES = [
    ("queued", None, None),  # runnable
    ("queued", NOW + timedelta(hours=1), None),  # not due
    ("queued", NOW - timedelta(hours=1), None),  # due
    ("retrying", None, NOW - timedelta(seconds=1)),  # backoff over
    ("retrying", None, NOW + timedelta(minutes=5)),  # still backing off
    ("running", None, None),  # claimed by another delivery
    ("succeeded", None, None),
    ("dead", None, None),
    ("cancelled", None, None),
]
IGNORED = {"id"}


def _twins() -> tuple[list[Job], list[Job]]:
    def make() -> list[Job]:
        return [JobFactory(status=status, run_at=run_at, next_retry_at=retry_at, attempts=1,
                           created_at=NOW - timedelta(minutes=10))
                for status, run_at, retry_at in STATES]
    return make(), make()


def _rows(jobs: list[Job]) -> list[dict]:
    values = {r["id"]: r for r in Job.objects.filter(pk__in=[j.pk for j in jobs]).values()}
    return [{k: v for k, v in values[j.pk].items() if k not in IGNORED} for j in jobs]


def _attempts(jobs: list[Job]) -> list[dict]:
    index = {j.pk: n for n, j in enumerate(jobs)}
    rows = JobAttempt.objects.filter(job__in=jobs).values()
    return sorted(({**{k: v for k, v in r.items() if k not in ("id", "job_id")},
                    "job": index[r["job_id"]]} for r in rows), key=lambda r: r["job"])


def _positions(twins: list[Job], claimed: list[Job]) -> list[int]:
    ids = {job.pk for job in claimed}
    return [n for n, job in enumerate(twins) if job.pk in ids]


def test_claim_pg_equals_claim_portable():
    # given twin jobs in every state
    fast, portable = _twins()

    # when each twin set is claimed by one version, at the same instant, by the same worker
    lease = NOW + timedelta(seconds=10)
    claimed_fast = fastpaths._claim_pg([str(j.pk) for j in fast], "w@h", NOW, lease)
    claimed_portable = fastpaths._claim_portable([str(j.pk) for j in portable], "w@h", NOW,
                                                 lease)

    # then the same twins were claimed (the runnable and due ones), and every row is the same
    # as its twin's
    assert _positions(fast, claimed_fast) == _positions(portable, claimed_portable) == [0, 2, 3]
    assert _rows(fast) == _rows(portable)
    # and what the claim returns is the row as it is after the claim
    assert all(c.status == JobStatus.RUNNING and c.worker == "w@h" for c in claimed_fast)


def test_succeed_pg_equals_succeed_portable():
    # given twin jobs claimed, one of each pair moved out of `running` meanwhile (rescued)
    fast, portable = [[JobFactory(replays=1, created_at=NOW) for _ in range(3)] for _ in range(2)]
    for twins in (fast, portable):
        claimed = fastpaths._claim_portable([str(j.pk) for j in twins], "w@h", NOW,
                                            NOW + timedelta(seconds=10))
        twins[:] = sorted(claimed, key=lambda j: [t.pk for t in twins].index(j.pk))
        Job.objects.filter(pk=twins[2].pk).update(status=JobStatus.QUEUED)
    results = [{"n": 1, "nested": {"a": [1, None]}}, None, {"n": 3}]
    later = NOW + timedelta(seconds=2)

    # when each set's successes are recorded by one version
    fastpaths._succeed_pg(list(zip(fast, results, strict=True)), later, "")
    fastpaths._succeed_portable(list(zip(portable, results, strict=True)), later)

    # then the rows and the attempt rows are the same, twin for twin
    assert _rows(fast) == _rows(portable)
    assert _attempts(fast) == _attempts(portable)
    assert [r["status"] for r in _rows(fast)] == ["succeeded", "succeeded", "queued"]
    assert [a["job"] for a in _attempts(fast)] == [0, 1]


@pytest.mark.django_db(transaction=True)
def test_the_stamp_skips_a_row_a_worker_holds_instead_of_waiting_for_it():
    import psycopg2
    from django.db import connections

    # given two committed jobs of one event, and another connection (a worker mid-claim)
    # holding a lock on the first
    event = EventFactory()
    held, free = JobFactory(event=event, handler="a"), JobFactory(event=event, handler="b")
    worker = psycopg2.connect(**connections["default"].get_connection_params())
    try:
        with worker.cursor() as cursor:
            cursor.execute("SELECT id FROM events_job WHERE id = %s FOR UPDATE", [str(held.pk)])

            # when the dispatcher stamps both as sent, with a short lock timeout so that a
            # wait would fail the test instead of hanging it
            with connection.cursor() as own:
                own.execute("SET lock_timeout = '2s'")
            try:
                fastpaths.stamp_sent([held, free], timezone.now())
            finally:
                with connection.cursor() as own:
                    own.execute("SET lock_timeout = 0")
    finally:
        worker.rollback()
        worker.close()

    # then it did not wait: the free job is stamped, the held one left as the worker has it
    held.refresh_from_db()
    free.refresh_from_db()
    assert free.enqueued_at is not None and held.enqueued_at is None


def test_jobs_without_an_event_are_stamped_in_one_statement(django_assert_num_queries):
    # given jobs of no event (a webhook fan-out's deliveries), and twins for the portable path
    fast, portable = [JobFactory(event=None) for _ in range(3)], [JobFactory(event=None)]
    now = timezone.now()

    # when they are stamped as sent
    with django_assert_num_queries(1):
        followed = fastpaths.stamp_sent(fast, now)
    fastpaths._stamp_portable([str(job.pk) for job in portable], now)

    # then each has its enqueued_at, as the portable version writes it, and no events' roll-up
    # ran in the statement
    assert not followed
    assert {job.enqueued_at for job in Job.objects.filter(pk__in=[j.pk for j in fast])} == {now}
    assert Job.objects.get(pk=portable[0].pk).enqueued_at == now

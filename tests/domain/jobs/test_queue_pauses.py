"""Durable queue pause, the domain's part: the pause row and its audit entry, what the relay
does with a paused queue's jobs, and the per-process answer the claim asks. The workers' part
(they stop consuming; a restart keeps it) is tests/workers/test_steering.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from domain.access.audit import Actor, actor_for_command
from domain.access.models import ActorKind, AuditAction, AuditEntry
from domain.common.errors import NotFound
from domain.jobs import routing
from domain.jobs.models import JobStatus, QueuePause
from domain.jobs.outbox import outbox_relay
from domain.jobs.selectors import queue_is_paused, queue_pauses
from domain.jobs.services import job_create, queue_pause, queue_resume
from tests.conftest import queued_job_ids
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

OPS = Actor(ActorKind.USER, "ops")


# --- Routing as the jobs app reads it ---------------------------------------------------------

def test_the_jobs_app_reads_the_queues_and_each_kinds_queue_from_the_celery_app():
    assert routing.declared_queues() == ["events", "notifications", "bulk", "cache",
                                         "maintenance"]
    by_queue = routing.kinds_by_queue()
    assert "noop" in by_queue["events"]
    assert "cache_invalidation" in by_queue["cache"]
    assert routing.kinds_on_queues({"cache"}) == by_queue["cache"]
    assert routing.kinds_on_queues(set()) == set()


# --- Pause and resume -------------------------------------------------------------------------

def test_a_pause_is_a_row_and_one_audit_entry_counting_the_waiting_jobs():
    # given two jobs waiting for the cache queue, one for another queue, one finished
    JobFactory(kind="cache_invalidation", status=JobStatus.QUEUED)
    JobFactory(kind="cache_invalidation", status=JobStatus.RETRYING)
    JobFactory(kind="noop", status=JobStatus.QUEUED)
    JobFactory(kind="cache_invalidation", status=JobStatus.SUCCEEDED)

    # when an operator pauses the cache queue
    pause = queue_pause(queue="cache", actor=OPS, reason="flushing the CDN by hand")

    # then the queue is paused, by them, for that reason
    assert pause.queue == "cache" and pause.paused_by == "ops"
    assert pause.reason == "flushing the CDN by hand"
    assert set(queue_pauses()) == {"cache"}
    assert queue_is_paused("cache") and not queue_is_paused("events")
    # and the audit log has one entry: who, what, on what, how many jobs wait on it
    entry = AuditEntry.objects.get()
    assert (entry.actor_kind, entry.actor, entry.action, entry.target_type, entry.target,
            entry.count) == ("user", "ops", AuditAction.PAUSE, "queue", "cache", 2)
    assert entry.detail == {"changed": True, "reason": "flushing the CDN by hand",
                            "waiting": 2}


def test_pausing_a_paused_queue_keeps_the_first_pause_and_is_audited_again():
    first = queue_pause(queue="bulk", actor=OPS, reason="first")
    again = queue_pause(queue="bulk", actor=actor_for_command("queues pause"), reason="second")

    assert again.paused_at == first.paused_at
    assert (again.paused_by, again.reason) == ("ops", "first")
    assert QueuePause.objects.count() == 1
    entries = list(AuditEntry.objects.order_by("id"))
    assert [(e.action, e.detail["changed"]) for e in entries] == [("pause", True),
                                                                  ("pause", False)]
    assert entries[1].actor_kind == "command"


def test_resume_removes_the_row_idempotently_with_an_audit_entry_each_time():
    queue_pause(queue="bulk", actor=OPS)

    assert queue_resume(queue="bulk", actor=OPS) is True
    assert queue_resume(queue="bulk", actor=OPS) is False

    assert not QueuePause.objects.exists()
    assert not queue_is_paused("bulk")
    resumes = AuditEntry.objects.filter(action=AuditAction.RESUME).order_by("id")
    assert [(e.target, e.detail["changed"]) for e in resumes] == [("bulk", True),
                                                                  ("bulk", False)]


def test_an_unknown_queue_is_not_found_and_nothing_is_written():
    with pytest.raises(NotFound) as raised:
        queue_pause(queue="nope", actor=OPS)
    assert raised.value.details["queues"] == routing.declared_queues()
    with pytest.raises(NotFound):
        queue_resume(queue="nope", actor=OPS)
    assert not QueuePause.objects.exists() and not AuditEntry.objects.exists()


def test_a_pause_row_of_a_queue_no_longer_declared_can_still_be_resumed():
    # given a pause left behind by a queue a deploy removed
    QueuePause.objects.create(queue="retired", paused_by="ops")

    assert queue_resume(queue="retired", actor=OPS) is True
    assert not QueuePause.objects.exists()


def test_resume_counts_the_staleness_of_jobs_sent_during_the_pause_from_now():
    # given a job handed to the broker two hours ago, waiting on a queue paused since
    two_hours_ago = timezone.now() - timedelta(hours=2)
    queue_pause(queue="cache", actor=OPS)
    held = JobFactory(kind="cache_invalidation", enqueued_at=two_hours_ago)
    never_sent = JobFactory(kind="cache_invalidation")
    other = JobFactory(kind="noop", enqueued_at=two_hours_ago)

    # when the queue is resumed
    before = timezone.now()
    queue_resume(queue="cache", actor=OPS)

    # then its hand-over counts from the resume: it waited, it was not lost, and the relay
    # does not send it a second time at once (OUTBOX_STALE_SECONDS)
    held.refresh_from_db()
    assert held.enqueued_at >= before
    # while a job never handed over stays for the relay, and another queue's is untouched
    never_sent.refresh_from_db()
    other.refresh_from_db()
    assert never_sent.enqueued_at is None and other.enqueued_at == two_hours_ago


def test_the_answer_is_kept_a_moment_in_each_process_and_dropped_by_its_own_changes(settings):
    settings.QUEUE_PAUSE_CACHE_SECONDS = 3600
    assert not queue_is_paused("bulk")

    # a pause written by another process (its row, no service here) is not seen yet
    QueuePause.objects.create(queue="bulk", paused_by="elsewhere")
    assert not queue_is_paused("bulk")

    # a change made in this process is seen at once
    queue_pause(queue="cache", actor=OPS)
    assert queue_is_paused("bulk") and queue_is_paused("cache")

    # and with no cache, every question reads the rows
    settings.QUEUE_PAUSE_CACHE_SECONDS = 0
    QueuePause.objects.filter(queue="bulk").delete()
    assert not queue_is_paused("bulk")


def test_the_running_workers_are_told_after_the_commit(django_capture_on_commit_callbacks):
    heard: list[tuple[str, bool]] = []
    routing.install_queue_listener(lambda queue, paused: heard.append((queue, paused)))
    try:
        with django_capture_on_commit_callbacks(execute=True):
            queue_pause(queue="bulk", actor=OPS)
            assert heard == []  # not before the commit
        with django_capture_on_commit_callbacks(execute=True):
            queue_resume(queue="bulk", actor=OPS)
    finally:
        routing._listeners.pop()
    assert heard == [("bulk", True), ("bulk", False)]


# --- The relay holds a paused queue's jobs ------------------------------------------------------

def test_the_relay_neither_sends_nor_takes_for_lost_the_jobs_of_a_paused_queue(private_broker):
    # given jobs of the paused cache queue: one never sent, one sent long ago (stale), one
    # sent minutes ago with its queue empty (what the relay takes for a lost message)
    old = timezone.now() - timedelta(hours=1)
    queue_pause(queue="cache", actor=OPS)
    never_sent = JobFactory(kind="cache_invalidation", created_at=old)
    stale = JobFactory(kind="cache_invalidation", created_at=old, enqueued_at=old)
    lost = JobFactory(kind="cache_invalidation", created_at=old,
                      enqueued_at=timezone.now() - timedelta(minutes=2))
    # and a job of a running queue, never sent
    running = JobFactory(kind="noop", created_at=old)

    # when the relay runs, it sends only the running queue's job
    assert outbox_relay(grace_seconds=0) == 1
    assert private_broker.job_ids("events") == [str(running.pk)]
    assert private_broker.job_ids("cache") == []
    never_sent.refresh_from_db()
    assert never_sent.enqueued_at is None

    # when the queue is resumed, the next relay sends the one never sent; the other two were
    # handed over and count from the resume
    queue_resume(queue="cache", actor=OPS)
    assert outbox_relay(grace_seconds=0) == 1
    assert private_broker.job_ids("cache") == [str(never_sent.pk)]
    for job in (stale, lost):
        job.refresh_from_db()
        assert job.enqueued_at > old


def test_a_job_created_while_its_queue_is_paused_waits_on_the_broker(
        broker, django_capture_on_commit_callbacks):
    # (the publish path does not ask about pauses: the message waits in the queue, which no
    # worker consumes, and counts in its depth)
    queue_pause(queue="events", actor=OPS)

    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind="noop", params={})
    assert queued_job_ids(broker, "events") == [str(job.pk)]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.enqueued_at is not None

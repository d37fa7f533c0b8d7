"""`manage.py queues`: the operator's list, pause and resume from a shell, audited as the OS
user who ran it. (`manage.py worker_alive`: tests/workers/test_presence.py.)"""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from domain.access.models import AuditEntry
from domain.jobs.models import JobStatus, QueuePause
from tests.conftest import run_command
from tests.factories import JobFactory
from workers.presence import forget, heartbeat

pytestmark = pytest.mark.django_db


def _lines(out: str) -> dict[str, str]:
    return {line.split(":")[0]: line for line in out.splitlines()}


def test_the_list_shows_every_queue_with_its_pause_depth_jobs_and_consumers(private_broker):
    heartbeat(hostname="w1@test", pid=7, queues=["cache"], configured=["cache"])
    JobFactory(kind="cache_invalidation", status=JobStatus.QUEUED)
    try:
        lines = _lines(run_command("queues")[0])
    finally:
        forget("w1@test")

    assert list(lines) == ["events", "notifications", "bulk", "cache", "maintenance"]
    assert lines["cache"].startswith("cache: running; depth 0; 1 job(s) waiting, the oldest")
    assert lines["cache"].endswith("; consumed by w1@test")
    assert lines["bulk"] == "bulk: running; depth 0; 0 job(s) waiting; no consumer"


def test_pause_with_a_reason_and_resume_are_audited_as_the_command(private_broker):
    out, _ = run_command("queues", "pause", "bulk", reason="reindexing")
    assert out.startswith("bulk: PAUSED since ")
    assert "(manage.py queues pause) (reindexing)" in out
    assert QueuePause.objects.get().reason == "reindexing"
    assert "bulk: PAUSED" in run_command("queues", "list")[0]

    out, _ = run_command("queues", "resume", "bulk")
    assert out.startswith("bulk: running;")
    assert not QueuePause.objects.exists()

    entries = list(AuditEntry.objects.order_by("id"))
    assert [(e.actor_kind, e.action, e.target) for e in entries] == [
        ("command", "pause", "bulk"), ("command", "resume", "bulk")]
    assert entries[0].actor.endswith("(manage.py queues pause)")
    assert entries[1].actor.endswith("(manage.py queues resume)")


def test_mistakes_are_errors_and_change_nothing():
    with pytest.raises(CommandError, match="No queue named 'nope'"):
        run_command("queues", "pause", "nope")
    with pytest.raises(CommandError, match="needs a queue name"):
        run_command("queues", "resume")
    with pytest.raises(CommandError, match="--reason goes with"):
        run_command("queues", "resume", "bulk", reason="why")
    assert not QueuePause.objects.exists() and not AuditEntry.objects.exists()

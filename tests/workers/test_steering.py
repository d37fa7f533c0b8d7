"""Durable queue pause on real workers (workers/steering.py, workers/base.py): a paused queue's
jobs stay `queued` with no attempt used, across a worker restart; a running worker hears of a
pause at once (the broadcast), or within seconds (the pause rows); a message that still
reaches a worker is given back unclaimed; a worker never starts consuming a queue it was not
started with."""

from __future__ import annotations

import pytest
from django.conf import settings

from config.celery import app
from domain.access.audit import Actor
from domain.access.models import ActorKind
from domain.jobs.models import Job, JobAttempt, JobStatus, QueuePause
from domain.jobs.services import job_create, queue_pause, queue_resume
from tests.faults.jobs import EFFECT_KIND, deliveries_key, effects_key, runs_key
from tests.faults.procs import wait_until
from tests.workers.real_workers import (  # noqa: F401 - fixtures
    DEAF,
    FAST,
    presence_redis,
    seen,
    spare_redis,
    wait_consuming,
    workers,
)
from workers.queues import ALL_QUEUES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

OPS = Actor(ActorKind.USER, "ops")
EVERY_QUEUE = set(ALL_QUEUES.split(","))


def _publish(n: int) -> list[Job]:
    """n jobs of the fault suite's countable kind (queue `events`), each committed and handed
    to the broker (the spare Redis) on commit."""
    return [job_create(kind=EFFECT_KIND, params={}) for _ in range(n)]


def _states(jobs: list[Job]) -> list[tuple[str, int]]:
    return sorted(Job.objects.filter(pk__in=[j.pk for j in jobs])
                  .values_list("status", "attempts"))


def _all_succeeded(jobs: list[Job]) -> bool:
    return _states(jobs) == [(JobStatus.SUCCEEDED, 1)] * len(jobs)


def _events_depth(spare_redis) -> int:  # noqa: F811
    return spare_redis.client(14).llen(settings.TEST_KEY_PREFIX + "events")


def test_a_pause_survives_a_worker_restart(workers, spare_redis, presence_redis):  # noqa: F811
    # given a worker consuming every queue, and the events queue paused: the worker stops
    # consuming it (told by the broadcast, or by its look at the pause rows)
    first = workers.start(env=FAST)
    wait_consuming(first, EVERY_QUEUE)
    queue_pause(queue="events", actor=OPS, reason="restart test")
    wait_consuming(first, EVERY_QUEUE - {"events"})

    # when the worker stops and a new one starts (no `cancel_consumer` survives that)
    first.stop()
    assert seen(first) is None  # a clean stop removes its presence at once
    second = workers.start(env=FAST)

    # and jobs are published for the paused queue, then one for a running queue
    held = _publish(3)
    sentinel = job_create(kind="cache_invalidation", params={"keys": ["restart-test"]})
    assert wait_until(lambda: Job.objects.get(pk=sentinel.pk).status == JobStatus.SUCCEEDED,
                      60), workers.logs()
    # and the new worker has been seen a few times since, started with the paused queue but
    # not consuming it
    record = wait_consuming(second, EVERY_QUEUE - {"events"})
    assert set(record["configured"]) == EVERY_QUEUE
    assert wait_until(lambda: seen(second)["seen_at"] > record["seen_at"], 30)

    # then the paused queue's jobs are still queued, no attempt used, never delivered:
    # their messages wait on the broker
    assert _states(held) == [(JobStatus.QUEUED, 0)] * 3
    assert not JobAttempt.objects.filter(job__in=held).exists()
    effects = spare_redis.client()
    assert [effects.get(deliveries_key(job.pk)) for job in held] == [None] * 3
    assert _events_depth(spare_redis) == 3

    # when the queue is resumed, the worker consumes it again and every job runs, once
    queue_resume(queue="events", actor=OPS)
    wait_consuming(second, EVERY_QUEUE)
    assert wait_until(lambda: _all_succeeded(held), 60), (_states(held), workers.logs())
    assert effects.scard(effects_key()) == 3


def test_a_running_worker_hears_of_a_pause_by_the_broadcast_and_only_steers_its_own_queues(
        workers, presence_redis):  # noqa: F811
    # given a worker started with two queues that never looks at the pause rows by itself
    # (within this test): only the broadcast can tell it
    worker = workers.start(env=DEAF, queues="events,cache")
    wait_consuming(worker, {"events", "cache"})

    # when the events queue is paused, it stops consuming it; resumed, it consumes it again
    queue_pause(queue="events", actor=OPS)
    wait_consuming(worker, {"cache"})
    queue_resume(queue="events", actor=OPS)
    wait_consuming(worker, {"events", "cache"})

    # when a queue it was not started with is paused and resumed, it does not take it up
    queue_pause(queue="bulk", actor=OPS)
    queue_resume(queue="bulk", actor=OPS)
    # (the resume's broadcast is the last it heard: its presence is rewritten after it)
    record = wait_consuming(worker, {"events", "cache"})
    assert set(record["configured"]) == {"events", "cache"}

    # and a consumer an operator cancelled by hand (Flower, `celery control`) stays cancelled
    # through a pause and resume of another queue
    app.control.cancel_consumer("cache", destination=[worker.name], reply=True, timeout=10)
    queue_pause(queue="events", actor=OPS)
    wait_consuming(worker, set())
    queue_resume(queue="events", actor=OPS)
    wait_consuming(worker, {"events"})


def test_a_worker_that_missed_the_broadcast_follows_the_pause_rows(
        workers, presence_redis):  # noqa: F811
    # given a worker looking at the pause rows every second
    worker = workers.start(env=FAST)
    wait_consuming(worker, EVERY_QUEUE)

    # when a queue is paused and resumed with no broadcast (the rows only, as a worker that
    # was reconnecting at that moment would miss it)
    QueuePause.objects.create(queue="bulk", paused_by="elsewhere")
    wait_consuming(worker, EVERY_QUEUE - {"bulk"})
    QueuePause.objects.filter(queue="bulk").delete()

    # then it follows the rows
    wait_consuming(worker, EVERY_QUEUE)


def test_a_message_of_a_paused_queue_that_reaches_a_worker_is_given_back_unclaimed(
        workers, spare_redis):  # noqa: F811
    # given a worker consuming the events queue that has not heard of its pause (no broadcast:
    # the row is written directly, and the worker does not look at the rows by itself)
    workers.start(env=DEAF)
    QueuePause.objects.create(queue="events", paused_by="elsewhere")

    # when a job of the queue is published, the worker takes its message
    job = _publish(1)[0]
    effects = spare_redis.client()
    assert wait_until(lambda: int(effects.get(deliveries_key(job.pk)) or 0) >= 2, 60), \
        workers.logs()

    # then it gave it back (and took it again), never claiming it: still queued, no attempt
    # used or written, the body never run
    assert _states([job]) == [(JobStatus.QUEUED, 0)]
    assert not JobAttempt.objects.filter(job=job).exists()
    assert effects.get(runs_key(job.pk)) is None
    assert "queue paused, message given back unclaimed" in workers.logs()

    # when the pause is lifted, the next delivery runs it, with its first attempt
    QueuePause.objects.filter(queue="events").delete()
    assert wait_until(lambda: _all_succeeded([job]), 60), workers.logs()
    assert effects.get(runs_key(job.pk)) == b"1"

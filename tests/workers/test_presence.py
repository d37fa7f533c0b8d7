"""Worker presence on real workers (workers/presence.py): who is alive and what it consumes,
read without a broadcast; /readyz naming the queues nobody consumes; the liveness command's
exit codes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.core.management import CommandError
from django.test import Client

from domain.access.audit import Actor
from domain.access.models import ActorKind
from domain.jobs.services import queue_pause
from tests.conftest import run_command
from tests.workers.real_workers import (  # noqa: F401 - fixtures
    FAST,
    presence_redis,
    seen,
    spare_redis,
    wait_consuming,
    workers,
)
from workers.presence import consumers_by_queue, forget, heartbeat, workers_seen

OPS = Actor(ActorKind.USER, "ops")


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_worker_is_seen_with_its_queues_and_readyz_names_the_queues_nobody_consumes(
        workers, presence_redis):  # noqa: F811
    # given a worker started with two of the five queues
    worker = workers.start(env=FAST, queues="events,cache")

    # then it is seen, with its main process, the queues it consumes and was started with
    record = wait_consuming(worker, {"events", "cache"})
    assert record["pid"] == worker.pid
    assert record["configured"] == ["cache", "events"]
    assert consumers_by_queue() == {"events": [worker.name], "cache": [worker.name],
                                    "notifications": [], "bulk": [], "maintenance": []}

    # and readiness is degraded (200), naming the three queues no worker consumes
    body = Client().get("/readyz").json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == body["checks"]["broker"] == "ok"
    assert body["checks"]["queues"].startswith(
        "degraded: no worker seen consuming notifications, bulk, maintenance in the last")
    assert body["queues"]["events"] == {"paused": False, "consumers": 1}

    # when one of them is paused, it is reported as paused, not as a problem
    queue_pause(queue="bulk", actor=OPS)
    body = Client().get("/readyz").json()
    assert body["checks"]["queues"].startswith(
        "degraded: no worker seen consuming notifications, maintenance in the last")
    assert body["queues"]["bulk"] == {"paused": True, "consumers": 0}

    # when the worker stops cleanly, it is no longer seen, at once
    worker.stop()
    assert seen(worker) is None
    assert Client().get("/readyz").json()["checks"]["queues"].startswith(
        "degraded: no worker seen consuming events, notifications, cache, maintenance")


def _alive(workers, *args: str) -> subprocess.CompletedProcess:  # noqa: F811
    """`manage.py worker_alive …` as a container's probe runs it, against the workers' Redis."""
    return subprocess.run([sys.executable, "manage.py", "worker_alive", *args],
                          cwd=settings.BASE_DIR, env=workers.env(), capture_output=True,
                          text=True, timeout=120)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_the_liveness_command_exits_0_for_a_live_worker_and_1_once_it_is_gone(
        workers, presence_redis):  # noqa: F811
    # given a live worker
    worker = workers.start(env=FAST)
    wait_consuming(worker, {"events", "notifications", "bulk", "cache", "maintenance"})

    # then its probe exits 0
    probe = _alive(workers, "--hostname", worker.name)
    assert probe.returncode == 0, probe.stderr
    assert f"{worker.name}: alive" in probe.stdout

    # when the worker is killed (no clean stop: its last heartbeat stays behind)
    worker.kill9()
    killed_at = time.monotonic()

    # then the probe exits 1 once its heartbeat is older than --max-age
    while time.monotonic() - killed_at < 3:
        time.sleep(0.2)
    probe = _alive(workers, "--hostname", worker.name, "--max-age", "2")
    assert probe.returncode == 1, (probe.stdout, probe.stderr)
    assert "not seen in the last 2 s" in probe.stderr
    # (with a longer --max-age the same heartbeat still counts: the age decides)
    assert _alive(workers, "--hostname", worker.name, "--max-age", "3600").returncode == 0


@pytest.mark.django_db
def test_presence_ages_out_and_the_liveness_command_judges_by_age():
    # a heartbeat written now, as a worker writes it
    heartbeat(hostname="w1@test", pid=42, queues=["cache"], configured=["cache", "events"])
    assert workers_seen()["w1@test"]["queues"] == ["cache"]
    assert consumers_by_queue()["cache"] == ["w1@test"]
    out, _ = run_command("worker_alive", hostname="w1@test")
    assert "w1@test: alive" in out and "pid 42" in out

    # one older than max_age is not seen
    time.sleep(0.3)
    assert workers_seen(max_age=0.1) == {}
    with pytest.raises(CommandError) as raised:
        run_command("worker_alive", hostname="w1@test", max_age=0.1)
    assert raised.value.returncode == 1

    # a host never seen is not alive; a worker gone cleanly is not seen
    with pytest.raises(CommandError) as raised:
        run_command("worker_alive", hostname="nobody@test")
    assert "nobody@test: not seen" in str(raised.value)
    forget("w1@test")
    assert workers_seen() == {}

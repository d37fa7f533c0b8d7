"""The compose file's healthchecks of Beat and of a worker, run as Docker runs them (the
`CMD-SHELL` string through `sh -c`), against real processes: a `celery beat` with the project's
scheduler, and a worker started by compose/celery/worker/start itself. A probe that passes on
a dead process, or fails on a live one, would restart the wrong containers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.compose.stack import ROOT, healthcheck_shell, services, start_scripts
from tests.faults.procs import Worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def _image_path(tmp_path: Path) -> str:
    """PATH with `python` and `celery` as in the image: this interpreter and its Celery."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "celery").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m celery "$@"\n')
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def _probe(service: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", healthcheck_shell(services()[service])], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_beat_healthcheck_follows_a_real_beat(workers, tmp_path):
    # given the file the compose file tells Beat to touch, in this test's own folder
    heartbeat = tmp_path / "beat.heartbeat"
    env = workers.env({"BEAT_HEARTBEAT_FILE": str(heartbeat), "PATH": _image_path(tmp_path)})

    # before Beat runs, the probe fails
    assert _probe("beat", env).returncode == 1

    # when a real Beat runs, it touches the file tick after tick, and the probe passes
    beat = workers.start_beat(env={"BEAT_HEARTBEAT_FILE": str(heartbeat)})
    assert wait_until(heartbeat.exists, timeout=60), beat.log()[-3000:]
    first = heartbeat.stat().st_mtime
    assert wait_until(lambda: heartbeat.stat().st_mtime > first, timeout=30), beat.log()[-3000:]
    healthy = _probe("beat", env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr

    # when Beat has stopped and a minute and more has passed (time is what is faked: the
    # file's age), the probe fails
    beat.stop()
    assert not beat.alive()
    old = time.time() - 75
    os.utime(heartbeat, (old, old))
    stale = _probe("beat", env)
    assert stale.returncode == 1, stale.stdout + stale.stderr


def test_the_worker_healthcheck_finds_the_node_the_start_script_starts(workers, tmp_path):
    # given a worker started the way its container starts it: the start script, profile
    # `fast`, named celery@<hostname> (in a container, the container's hostname)
    hostname = socket.gethostname()
    path = _image_path(tmp_path)
    name = f"celery@{hostname}"
    workers.log_dir.mkdir(parents=True, exist_ok=True)
    worker: Worker = workers._spawn(
        name, ["bash", str(start_scripts()["/start-celeryworker"])],
        workers.log_dir / "start-script-worker.log",
        # CELERY_LOG_LEVEL as a container has it: Celery itself writes this variable (a number)
        # into the environment of a process that set up its logging, as this one may have
        {"PATH": path, "CELERY_WORKER_PROFILE": "fast", "CELERY_LOG_LEVEL": "INFO"})
    workers.wait_ready(worker, timeout=120)
    probe_env = workers.env({"PATH": path, "HOSTNAME": hostname})

    # then the compose file's worker probe finds it
    for service in ("worker-fast", "worker-bulk", "worker-notifications"):
        assert healthcheck_shell(services()[service]) == healthcheck_shell(
            services()["worker-fast"]), "one probe for every worker role"
    healthy = _probe("worker-fast", probe_env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr + worker.log()[-3000:]
    assert name in healthy.stdout

    # and once the worker has stopped, it does not
    worker.stop()
    gone = _probe("worker-fast", probe_env)
    assert gone.returncode != 0, gone.stdout + gone.stderr

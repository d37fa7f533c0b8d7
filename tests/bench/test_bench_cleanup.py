"""The suite stops every process it started when it is told to stop (SIGTERM, as `timeout`
sends), not only when it ends by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="the benchmark suite needs PostgreSQL; this run uses "
                    f"{connection.vendor}. Set DATABASE_URL=postgres://... to run it.")
def test_sigterm_mid_run_leaves_no_process_behind(tmp_path):
    # given the suite running on its own scratch database
    db = settings.DATABASES["default"]
    name = f"conveyor_bench_test_{os.getpid()}"
    parts = urlsplit(f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{name}")
    env = {**os.environ, "BENCH_DATABASE_URL": urlunsplit(parts)}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--quick", "--only", "ingest",
                             "--out", str(tmp_path / "out.json")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        started = _wait_for_line(proc, "ingest round 1", timeout=60)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert started and any("gunicorn" in " ".join(c.cmdline()) for c in children)

        # when it is sent SIGTERM in the middle of a measurement
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        _drop_database(parts)

    # then it exits with 128 + SIGTERM, and none of the processes it started is left
    assert proc.returncode == 128 + signal.SIGTERM
    deadline = time.monotonic() + 10
    while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
        assert time.monotonic() < deadline, [c.cmdline() for c in children if c.is_running()]
        time.sleep(0.1)


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if text in line:
            return True
        if not line and proc.poll() is not None:
            return False
    return False


def _drop_database(parts) -> None:
    import psycopg2

    admin = psycopg2.connect(urlunsplit((parts.scheme, parts.netloc, "/postgres", "", "")))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
    admin.close()

"""runstack, the local stack runner: every option explains itself, and --prepare-only prepares
(idempotently), says what it did, and starts nothing — not even the embedded Redis.

Run as a developer runs it: `manage.py runstack` in a fresh process with the local settings,
on a fresh SQLite file."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from config.embedded import redis_reachable
from domain.access.models import hash_api_key
from scheduler.schedules import SCHEDULES
from tests.faults.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = ("--host", "--port", "--flower-port", "--profile", "--prepare-only")


@pytest.fixture
def local_env(tmp_path) -> dict:
    redis_port = free_port()  # nothing listens there
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REDIS_PORT": str(redis_port)}


def runstack(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "runstack", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_help_describes_every_option(local_env):
    out = runstack(local_env, "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # argparse wraps lines
    for option in OPTIONS:
        # the option, its metavar if any, then words of its own
        assert re.search(rf"{option}(?: [A-Z_]+| {{[a-z,]+}})? [A-Z][a-z]+", text), option
    assert "Local development only" in text


def test_prepare_only_prepares_says_what_and_starts_nothing(local_env):
    redis_port = int(local_env["REDIS_PORT"])

    # when a developer prepares a fresh machine
    first = runstack(local_env, "--prepare-only")

    # then it reports what it did, and started nothing (no embedded Redis on the broker port)
    assert first.returncode == 0, first.stderr
    assert "Prepared (nothing started)" in first.stdout
    assert "Conveyor is starting" not in first.stdout
    applied = int(re.search(r"(\d+) migration\(s\) applied", first.stdout).group(1))
    assert applied > 10
    assert re.search(r"Demo catalog\s+7 product\(s\) created", first.stdout)
    # (migrate synced the schedules already: scheduler/apps.py)
    assert f"Schedules     created=0 updated=0 kept={len(SCHEDULES)}" in first.stdout
    assert "Admin login   admin / admin (created)" in first.stdout
    assert "(created)" in first.stdout.split("Demo API key", 1)[1]
    assert "embedded" not in first.stdout + first.stderr
    assert not redis_reachable(f"redis://127.0.0.1:{redis_port}/0", 0.5)
    # and what it prepared is in the database
    db = sqlite3.connect(local_env["DATABASE_URL"].removeprefix("sqlite:///"))
    demo_key = "cvk_demo_local_only_do_not_use_in_production"
    assert db.execute("SELECT count(*) FROM common_apikey WHERE key_hash = ?",
                      [hash_api_key(demo_key)]).fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM catalog_product").fetchone() == (7,)
    assert db.execute("SELECT count(*) FROM django_celery_beat_periodictask WHERE enabled"
                      ).fetchone() == (len(SCHEDULES),)

    # when it runs again, it changes nothing and says so
    second = runstack(local_env, "--prepare-only")
    assert second.returncode == 0, second.stderr
    assert "0 migration(s) applied" in second.stdout
    assert "0 product(s) created" in second.stdout
    assert f"created=0 updated=0 kept={len(SCHEDULES)}" in second.stdout
    assert "(already there)" in second.stdout and "(created)" not in second.stdout

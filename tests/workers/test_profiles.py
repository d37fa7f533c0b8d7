"""Worker profiles are the one place queue lists are written: the container start script takes
its queues, concurrency and pool from workers/profiles.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.profiles import PROFILES, main
from workers.queues import Queues

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "compose" / "celery" / "worker" / "start"


def _env(tmp_path: Path, **env: str) -> dict[str, str]:
    """The environment to run compose/celery/worker/start in. `celery` on the PATH is a
    stand-in that prints its arguments (starting a worker is not what is under test); `python`
    is this interpreter, as in the image."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "celery"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    clean = {k: v for k, v in os.environ.items()
             if k not in ("CELERY_QUEUES", "CELERY_CONCURRENCY", "CELERY_WORKER_PROFILE")}
    return {**clean, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env}


def _start_script_argv(tmp_path: Path, **env: str) -> list[str]:
    """The celery command line the start script ends in."""
    out = subprocess.run(["bash", str(START)], cwd=ROOT, capture_output=True, text=True,
                         env=_env(tmp_path, **env), check=True, timeout=60)
    return out.stdout.splitlines()


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_start_script_takes_queues_concurrency_and_pool_from_the_profile(tmp_path, profile):
    argv = _start_script_argv(tmp_path, CELERY_WORKER_PROFILE=profile)
    assert argv[:3] == ["-A", "config", "worker"]
    assert _option(argv, "-Q") == PROFILES[profile].queues
    assert _option(argv, "--concurrency") == str(PROFILES[profile].concurrency)
    assert _option(argv, "--pool") == PROFILES[profile].pool


def test_the_default_profile_consumes_every_queue(tmp_path):
    argv = _start_script_argv(tmp_path)
    assert set(_option(argv, "-Q").split(",")) == {q.value for q in Queues}


def test_an_operator_can_override_queues_and_concurrency_for_one_container(tmp_path):
    argv = _start_script_argv(tmp_path, CELERY_QUEUES="bulk", CELERY_CONCURRENCY="7")
    assert _option(argv, "-Q") == "bulk" and _option(argv, "--concurrency") == "7"


def test_every_queue_is_consumed_by_some_profile_split():
    # one worker per role in production: fast + notifications + bulk cover every queue
    covered = {q for name in ("fast", "notifications", "bulk")
               for q in PROFILES[name].queues.split(",")}
    assert covered == {q.value for q in Queues}


def test_the_profile_cli_refuses_an_unknown_profile(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["nope", "queues"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_an_override_of_a_named_profile_is_said_out_loud(tmp_path):
    # an override meant for one service but set for all reaches a `bulk` worker too: the
    # start script still honours it, and says so first
    out = subprocess.run(["bash", str(START)], cwd=ROOT, capture_output=True, text=True,
                         env=_env(tmp_path, CELERY_WORKER_PROFILE="bulk", CELERY_QUEUES="events"),
                         check=True, timeout=60)
    assert "profile bulk overridden by CELERY_QUEUES='events'" in out.stderr
    assert _option(out.stdout.splitlines(), "-Q") == "events"

"""Beat's liveness file (scheduler/heartbeat.py): the scheduler touches it after each tick, and
`python -m scheduler.heartbeat` judges its age. A real `celery beat` and the compose file's
probe are in tests/faults/test_container_probes.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
from django_celery_beat.models import PeriodicTask

from config.celery import app
from scheduler.beat import LedgerScheduler
from scheduler.heartbeat import heartbeat_age, heartbeat_touch, main
from tests.conftest import PrivateKeys


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_touch_creates_the_file_then_moves_its_time(tmp_path):
    path = tmp_path / "beat.heartbeat"
    heartbeat_touch(str(path))
    assert path.exists() and heartbeat_age(str(path)) < 5
    _age(path, 300)
    heartbeat_touch(str(path))
    assert heartbeat_age(str(path)) < 5
    assert path.read_text() == ""  # touched, never written to


def test_an_unwritable_file_is_reported_once_and_beat_goes_on(tmp_path, caplog):
    path = str(tmp_path / "missing-folder" / "beat.heartbeat")
    with caplog.at_level(logging.ERROR, logger="scheduler.heartbeat"):
        heartbeat_touch(path)
        heartbeat_touch(path)
    assert [r.message for r in caplog.records].count(
        next(r.message for r in caplog.records)) == 1
    assert "beat heartbeat not written" in caplog.text
    assert heartbeat_age(path) is None


@pytest.mark.parametrize(("age", "max_age", "code"), [
    (1, 60, 0), (59, 60, 0), (61, 60, 1), (200, 300, 0), (301, 300, 1)])
def test_the_probe_judges_the_age(tmp_path, capsys, age, max_age, code):
    path = tmp_path / "beat.heartbeat"
    path.touch()
    _age(path, age)
    assert main([str(path), "--max-age", str(max_age)]) == code
    out = capsys.readouterr()
    assert ("last tick" in out.out) if code == 0 else ("over" in out.err)


def test_the_probe_fails_without_a_file_or_a_path(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    # `"$BEAT_HEARTBEAT_FILE"` with the variable unset is an empty argument
    assert main([""]) == 1
    assert "BEAT_HEARTBEAT_FILE" in capsys.readouterr().err


def test_the_probe_runs_as_a_module_without_django(tmp_path):
    path = tmp_path / "beat.heartbeat"
    path.touch()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "scheduler.heartbeat", str(path)],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    # a probe every 30 s in every Beat container: no Django, no Celery imported
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "scheduler" in imported  # the package; the module itself runs as __main__
    assert not {m for m in imported if m.split(".")[0] in ("django", "celery")}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("configured", [True, False])
def test_the_scheduler_touches_the_file_after_each_tick(tmp_path, settings,
                                                        private_broker: PrivateKeys, configured):
    # given the real scheduler on the test database, nothing due (every schedule paused)
    path = tmp_path / "beat.heartbeat"
    settings.BEAT_HEARTBEAT_FILE = str(path) if configured else ""
    PeriodicTask.objects.update(enabled=False)
    scheduler = LedgerScheduler(app=app)
    try:
        # when it ticks, then the file is there, touched just now (or none without the setting)
        scheduler.tick()
        if not configured:
            assert not path.exists()
            return
        assert heartbeat_age(str(path)) < 5
        # and the next tick touches it again
        _age(path, 120)
        scheduler.tick()
        assert heartbeat_age(str(path)) < 5
    finally:
        scheduler.close()
        scheduler._finalize.cancel()

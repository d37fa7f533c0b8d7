"""The declarations: each is checked when made, and the README's table lists them all."""

import re
from pathlib import Path

from scheduler.schedules import SCHEDULES, declared

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_lists_every_declared_schedule_with_its_expiry():
    text = README.read_text()
    section = text[text.index("## Scheduled maintenance"):
                   text.index("### Schedules: operator guide")]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z-]+)` \|.*$", section,
                                                         re.MULTILINE)}
    schedule_rows = {name: row for name, row in rows.items() if declared(name)}
    assert set(schedule_rows) == {s.name for s in SCHEDULES}
    for schedule in SCHEDULES:
        cells = [c.strip() for c in schedule_rows[schedule.name].strip("|").split("|")]
        policy = {"skip": "skip", "run_once": "run once"}[schedule.missed]
        assert cells[3] == policy, schedule.name
        if schedule.cron:
            assert f"`{schedule.cron}` {schedule.timezone}" in cells[1] or \
                f"(`{schedule.cron}`)" in cells[1], schedule.name


def test_every_schedule_names_a_lock_ttl_and_an_expiry():
    for schedule in SCHEDULES:
        assert schedule.lock_ttl > 0 and schedule.expires_seconds > 0, schedule.name


def test_the_overlap_lock_outlives_each_tasks_hard_time_limit(settings):
    # the lock, and the ledger's "worker lost" verdict, trust lock_ttl as the longest a run
    # lasts: a run still working past it would be taken for lost and overlapped
    from config.celery import app

    app.loader.import_default_modules()
    for schedule in SCHEDULES:
        task = app.tasks[schedule.task]
        limit = task.time_limit or settings.CELERY_TASK_TIME_LIMIT
        assert schedule.lock_ttl > limit, (schedule.name, schedule.lock_ttl, limit)

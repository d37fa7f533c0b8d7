"""Task declarations: one source of truth per task. A job task's name, queue and retry policy
come from its job kind, and every module of tasks/ is found without a list kept by hand."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import tasks
from config.celery import app
from domain.jobs.registry import job_kinds
from workers.base import JobTask
from workers.queues import queue_for_task

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_of_the_tasks_package_is_imported_by_the_app():
    app.loader.import_default_modules()
    for module in pkgutil.iter_modules(tasks.__path__):
        assert f"tasks.{module.name}" in sys.modules, module.name


def test_every_job_kind_has_one_task_named_and_configured_by_it():
    app.loader.import_default_modules()
    for kind in job_kinds():
        task = app.tasks[kind.task_name]
        assert isinstance(task, JobTask), kind.name
        assert task.job_kind == kind
        assert task.retry_policy == kind.retry
        assert queue_for_task(task.name) is not None


def test_a_new_task_module_is_found_with_no_list_to_update():
    # given a new module in tasks/ that nothing names
    probe = ROOT / "tasks" / "_discovery_probe.py"
    probe.write_text("from celery import shared_task\n\n\n"
                     "@shared_task(name='conveyor.demo.discovery_probe')\n"
                     "def probe():\n    return 'found'\n")
    try:
        # when a fresh process loads the Celery app the way a worker does
        code = ("import django; django.setup(); from config.celery import app; "
                "app.loader.import_default_modules(); "
                "print('conveyor.demo.discovery_probe' in app.tasks)")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, check=True, timeout=60)
    finally:
        probe.unlink()
    # then its task is registered
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr

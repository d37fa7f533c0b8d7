"""Task declarations: one source of truth per task. A job task's name, queue and retry policy
come from its job kind, and every module of tasks/ is found without a list kept by hand."""

from __future__ import annotations

import os
import pkgutil
import shutil
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


def test_a_new_task_module_is_found_with_no_list_to_update(tmp_path):
    # given a copy of the tasks package with a new module in it that nothing names
    shutil.copytree(ROOT / "tasks", tmp_path / "tasks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "tasks" / "discovery_probe.py").write_text(
        "from celery import shared_task\n\n\n"
        "@shared_task(name='conveyor.demo.discovery_probe')\n"
        "def probe():\n    return 'found'\n")

    # when a fresh process loads the Celery app the way a worker does, with that copy as its
    # `tasks` package (first on the path) and the project for everything else
    code = ("import django; django.setup(); from config.celery import app; "
            "app.loader.import_default_modules(); import tasks; print(tasks.__file__); "
            "print('conveyor.demo.discovery_probe' in app.tasks)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})

    # then its task is registered, from the copy
    lines = out.stdout.strip().splitlines()
    assert lines[-2].startswith(str(tmp_path)), out.stderr
    assert lines[-1] == "True", out.stderr

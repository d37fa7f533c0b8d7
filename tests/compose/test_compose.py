"""The production stack (compose/) checked offline, since no Docker engine runs here: the compose
file against the Compose specification's JSON schema (check-jsonschema's vendored copy), and
against the start scripts, the settings and compose/.env.example, so none of them can drift
from the others. The healthchecks of Beat and of a worker run against real processes in
tests/faults/test_container_probes.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.compose.stack import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    PLATFORM_VARIABLES,
    POSTGRES_IMAGE_VARIABLES,
    ROOT,
    app_services,
    command_of,
    compose,
    compose_variables,
    env_example,
    healthcheck_shell,
    script_variables,
    services,
    services_running,
    settings_variables,
    stack_scripts,
    start_scripts,
)
from workers.profiles import PROFILES
from workers.queues import Queues

WORKER = "/start-celeryworker"
BEAT = "/start-celerybeat"
FLOWER = "/start-flower"
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with the Compose specification's schema it ships (vendor.compose-spec,
    from compose-spec/compose-spec), offline: nothing is downloaded."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         "--no-cache", str(path)],
        capture_output=True, text=True, timeout=120, check=False)


# --- the Compose specification --------------------------------------------------------------

def test_the_compose_file_follows_the_compose_specification():
    result = _check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


@pytest.mark.parametrize(("service", "change", "complaint"), [
    ("worker-fast", {"healthchek": {"test": ["CMD", "true"]}}, "healthchek"),
    ("beat", {"deploy": {"replicas": [1, 2]}}, "replicas"),
    ("flower", {"restart": ["unless-stopped"]}, "restart"),
])
def test_the_schema_check_refuses_a_broken_compose_file(tmp_path, service, change, complaint):
    # given the compose file with one mistake in one service (a misspelled key, a wrong type)
    broken = compose()
    broken["services"][service].update(change)
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken, sort_keys=False))

    # when it is checked, then the check fails and names what is wrong
    result = _check_jsonschema(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert complaint in result.stdout + result.stderr


# --- services, start scripts, healthchecks ----------------------------------------------------

def test_every_service_has_a_healthcheck_and_a_restart_policy():
    for name, service in services().items():
        healthcheck = service.get("healthcheck") or {}
        assert healthcheck.get("test") and healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name
        assert not healthcheck.get("disable"), name
        assert service.get("restart") in RESTART_POLICIES, (name, service.get("restart"))


def _last_command(script: Path) -> str:
    """The script's last command, continuation lines joined, comments and blank lines left out."""
    text = script.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    return lines[-1]


def test_every_app_service_runs_a_start_script_that_ends_in_exec():
    scripts = start_scripts()
    assert set(scripts) >= {"/entrypoint", "/start", WORKER, BEAT, FLOWER}, scripts
    assert 'ENTRYPOINT ["/entrypoint"]' in DOCKERFILE.read_text()
    for name, service in services().items():
        if "build" in service:
            # every service built from our image runs a script the Dockerfile installs
            assert command_of(service) in scripts, (name, service.get("command"))
    for target, script in scripts.items():
        assert script.is_file(), f"{target}: {script} is missing"
        assert os.access(script, os.X_OK), f"{script} is not executable"
        text = script.read_text()
        assert text.startswith("#!/bin/bash\n"), script
        assert "set -o errexit -o pipefail -o nounset" in text, script
        # the process replaces the shell, so it gets Docker's SIGTERM and its exit code
        assert _last_command(script).startswith("exec "), (script, _last_command(script))
    assert _last_command(scripts["/entrypoint"]) == 'exec "$@"'


def test_each_worker_role_is_a_service_and_together_they_consume_every_queue():
    workers = services_running(WORKER)
    profiles = {name: s["environment"]["CELERY_WORKER_PROFILE"] for name, s in workers.items()}
    assert profiles == {"worker-fast": "fast", "worker-bulk": "bulk",
                        "worker-notifications": "notifications"}
    consumed = [q for p in profiles.values() for q in PROFILES[p].queues.split(",")]
    assert sorted(consumed) == sorted(q.value for q in Queues), "each queue by exactly one role"


def test_workers_scale_no_container_has_a_fixed_name_and_workers_publish_no_port():
    for name, service in services().items():
        # a fixed name would refuse `--scale` (and a second project on the same host)
        assert "container_name" not in service, name
    for name, service in services_running(WORKER).items():
        assert "ports" not in service, name
        assert service.get("deploy", {}).get("replicas", 1) == 1, name  # --scale decides
        assert int(service["stop_grace_period"].rstrip("s")) > 300, (
            "a stopping worker gets the hard task time limit (CELERY_TASK_TIME_LIMIT) first")


def test_there_is_exactly_one_beat_and_nothing_scales_it():
    beats = services_running(BEAT)
    assert list(beats) == ["beat"]
    beat = beats["beat"]
    assert beat["deploy"]["replicas"] == 1
    assert "scale" not in beat
    # and no documented command scales it
    for doc in (ROOT / "README.md", COMPOSE_DIR / "README.md"):
        scaled = re.findall(r"--scale\s+([\w-]+)=", doc.read_text())
        assert scaled, f"{doc.name} documents no --scale command"
        assert not [s for s in scaled if s in beats], (doc, scaled)
        assert set(scaled) <= set(services_running(WORKER)), (doc, scaled)


def test_flower_has_basic_auth_and_keeps_its_state_on_a_volume():
    flower_start = start_scripts()[FLOWER].read_text()
    assert '--basic-auth="${CELERY_FLOWER_USER}:${CELERY_FLOWER_PASSWORD}"' in flower_start
    assert "--persistent=True" in flower_start
    db = Path(re.search(r"--db=(\S+)", flower_start).group(1))
    # the state file's folder is a named volume of the flower service
    flowers = services_running(FLOWER)
    assert list(flowers) == ["flower"]
    flower = flowers["flower"]
    mounts = dict(v.split(":", 1)[::-1] for v in flower["volumes"])
    assert str(db.parent) in mounts, (db, flower["volumes"])
    assert mounts[str(db.parent)] in compose()["volumes"]
    # which the image creates for the runtime user (a new volume takes its ownership)
    assert f"mkdir {db.parent} && chown django:django {db.parent}" in DOCKERFILE.read_text()


def test_the_beat_healthcheck_reads_the_file_beat_touches(tmp_path):
    # given the Beat service's file (somewhere the runtime user may write: not the code's
    # folder, which root owns in the image) and its healthcheck
    beat = services()["beat"]
    in_image = Path(beat["environment"]["BEAT_HEARTBEAT_FILE"])
    assert in_image.is_absolute() and not in_image.is_relative_to("/app"), in_image
    command = healthcheck_shell(beat)
    assert "$BEAT_HEARTBEAT_FILE" in command

    # run as Docker runs it, with the image's `python` (this interpreter) and the file here
    heartbeat = tmp_path / "beat.heartbeat"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "BEAT_HEARTBEAT_FILE": str(heartbeat)}

    def probe() -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", command], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60, check=False)

    # no file yet: Beat has not ticked
    missing = probe()
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    # touched just now: healthy
    heartbeat.touch()
    assert probe().returncode == 0
    # last touched two minutes ago: unhealthy (time is the one thing faked)
    old = time.time() - 120
    os.utime(heartbeat, (old, old))
    stale = probe()
    assert stale.returncode == 1 and "over 60 s" in stale.stderr


# --- variables: .env.example, settings, scripts ------------------------------------------------

def _read_by_the_stack() -> dict[str, set[str]]:
    """{variable: who reads it} for the settings, the scripts and the compose file."""
    readers: dict[str, set[str]] = {}
    for name in settings_variables():
        readers.setdefault(name, set()).add("settings")
    for script in stack_scripts():
        for name in script_variables(script):
            readers.setdefault(name, set()).add(str(script.relative_to(ROOT)))
    for name in compose_variables():
        readers.setdefault(name, set()).add("docker-compose.yml")
    for name in POSTGRES_IMAGE_VARIABLES:
        readers.setdefault(name, set()).add("the postgres image")
    for name in PLATFORM_VARIABLES:
        readers.pop(name, None)
    return readers


def test_the_variable_finders_see_what_the_code_reads():
    # the finders themselves: a few known reads of each kind, so an empty result cannot pass
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "DJANGO_SECURE_HSTS_SECONDS",
            "NOTIFICATIONS_PUBLIC_URL"} <= settings_variables()
    entrypoint, = (p for p in stack_scripts() if p.name == "entrypoint")
    assert {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL",
            "SERVICE_WAIT_TIMEOUT"} <= script_variables(entrypoint)
    assert {"DJANGO_PUBLISH", "POSTGRES_USER", "HOSTNAME",
            "CELERY_WORKER_PROFILE"} <= compose_variables()


def test_env_example_lists_exactly_the_variables_the_stack_reads():
    readers = _read_by_the_stack()
    listed = set(env_example())
    missing = {n: sorted(readers[n]) for n in sorted(set(readers) - listed)}
    unread = sorted(listed - set(readers))
    assert not missing, f"read but not in compose/.env.example: {missing}"
    assert not unread, f"in compose/.env.example but read by nothing: {unread}"


def test_start_scripts_name_only_settings_the_code_reads_or_the_example_documents():
    # a variable a script reads is a setting, or a process option .env.example documents:
    # a misspelt name (GUNICORN_WORKER) fails here instead of being silently empty
    documented = set(env_example())
    for script in stack_scripts():
        unknown = script_variables(script) - settings_variables() - documented
        assert not unknown, f"{script.relative_to(ROOT)} reads {sorted(unknown)}"


def test_every_variable_of_env_example_is_in_the_readme_configuration_table():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    in_table = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))
    assert not sorted(set(env_example()) - in_table)


def test_the_required_values_are_left_for_the_operator():
    example = env_example()
    for name in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "CELERY_FLOWER_PASSWORD"):
        assert example[name] == (False, ""), name
    assert not [n for n, (commented, value) in example.items()
                if not commented and "$" in value], "compose would interpolate a $"


_DUMP_SETTINGS = """
import importlib, json, re
module = importlib.import_module("config.settings.production")
print(json.dumps({k: re.sub(r" at 0x[0-9a-f]+", "", repr(getattr(module, k)))
                  for k in dir(module) if k.isupper()}))
"""


def _production_settings(env: dict[str, str]) -> dict[str, str]:
    result = subprocess.run([sys.executable, "-c", _DUMP_SETTINGS], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_the_commented_values_of_env_example_are_the_codes_defaults():
    # given the production settings loaded from the example's set values alone (empty secrets
    # filled in), with nothing of this machine's environment that the stack reads
    example = env_example()
    base = {k: v for k, v in os.environ.items() if k not in _read_by_the_stack()}
    set_values = {n: v or "x" * 50 for n, (commented, v) in example.items() if not commented}
    defaults = _production_settings({**base, **set_values})

    # when every commented line is uncommented as well
    shown = {n: v for n, (commented, v) in example.items() if commented}
    uncommented = _production_settings({**base, **set_values, **shown})

    # then no setting changes: each commented line shows the value the code uses anyway
    changed = {k: (defaults.get(k), uncommented.get(k))
               for k in set(defaults) | set(uncommented) if defaults.get(k) != uncommented.get(k)}
    assert not changed, changed
    assert len(shown) > 60, "most variables are optional and shown commented"


# --- documentation ---------------------------------------------------------------------------

def test_the_compose_readme_describes_every_service():
    text = (COMPOSE_DIR / "README.md").read_text()
    table = {m for m in re.findall(r"^\| `([\w-]+)`", text, flags=re.MULTILINE)}
    assert table == set(services()), (table, set(services()))
    assert "compose/.env.example" in text and ".env.production.example" not in text
    assert ENV_EXAMPLE.name == ".env.example"


def test_app_services_share_one_image_and_the_production_env_file():
    for name, service in app_services().items():
        assert service["image"] == "conveyor_production:latest", name
        assert service["env_file"] == [".env.production"], name

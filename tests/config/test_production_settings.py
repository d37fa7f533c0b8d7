"""Production settings refuse to start unsafe, and `check --deploy` is clean."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
GOOD_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "p" * 10 + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH!@#$%^&*",
    "DJANGO_ALLOWED_HOSTS": "conveyor.example.com",
    "DATABASE_URL": "postgres://conveyor@127.0.0.1:5432/conveyor",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def _manage(*args: str, **env_overrides: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(GOOD_ENV)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean():
    result = _manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(("override", "message"), [
    ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY"),
    ({"DJANGO_SECRET_KEY": "short"}, "at least 50 characters"),
    ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be off"),
    ({"DJANGO_ALLOWED_HOSTS": None}, "DJANGO_ALLOWED_HOSTS"),
    ({"METRICS_TOKEN": "short-and-guessable"}, "METRICS_TOKEN must be at least 32 characters"),
    ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,intranet"}, "'intranet' is not a network"),
])
def test_production_refuses_unsafe_configuration(override, message):
    result = _manage("check", **override)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_has_no_local_credentials():
    result = _manage("shell", "-c",
                     "from django.conf import settings; "
                     "print(hasattr(settings, 'DEMO_API_KEY'), settings.DEBUG)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == ["False", "False"]


def test_metrics_is_scraped_over_plain_http_and_refused_without_its_token():
    # given production settings with a scrape token, and a plain-HTTP request (no TLS proxy
    # in front: Prometheus scrapes the container inside the network), the API for comparison
    script = ("from django.test import Client; c = Client(HTTP_HOST='conveyor.example.com'); "
              "print(c.get('/metrics').status_code, c.get('/api/v1/jobs').status_code)")
    redis_url, prefix = settings.REDIS_URL, f"{settings.TEST_KEY_PREFIX}production-settings:"
    try:
        result = _manage("shell", "-c", script, METRICS_TOKEN="m" * 40, REDIS_URL=redis_url,
                         REDIS_KEY_PREFIX=prefix)
    finally:  # (the request counts it flushed at exit)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)

    # then /metrics is not redirected to HTTPS: it answers, and refuses the token-less scrape
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == ["403", "301"]


@pytest.mark.parametrize(("log_format", "json_lines"), [(None, True), ("text", False)])
def test_production_logs_json_lines_unless_told_otherwise(log_format, json_lines):
    result = _manage("shell", "-c", "import logging; "
                     "logging.getLogger('conveyor.check').warning('two\\nlines')",
                     LOG_FORMAT=log_format)
    assert result.returncode == 0, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    if json_lines:
        parsed = json.loads(line)
        assert (parsed["level"], parsed["logger"], parsed["message"]) == (
            "WARNING", "conveyor.check", "two\nlines")
    else:
        assert line == "lines"  # the text format's message runs on, as it always did
        assert "level=WARNING logger=conveyor.check correlation_id=- two" in result.stderr


def test_an_unknown_log_format_is_refused():
    result = _manage("check", LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "LOG_FORMAT must be 'text' or 'json'" in result.stderr

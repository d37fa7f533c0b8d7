"""Settings shared by every environment. Every value is read through one `environ.Env()`.

The environment variables are documented in README.md ("Configuration").
"""

import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
# A local .env file is a convenience for development; real deployments set the environment.
if (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"))

# --- Core -----------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
TIME_ZONE = "UTC"
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_celery_results",
    # Domain apps, lowest first: each may import only those above it in this list
    # (tests/test_layout.py walks the imports; README "Layout").
    "domain.common",
    "domain.access",
    "domain.jobs",
    "domain.events",
    "domain.catalog",
    "domain.customers",
    "domain.bulk",
    "domain.notifications",
    "domain.orders",
    # The worker runtime and the schedules; task modules (tasks/) are not an app.
    "workers",
    "scheduler",
]

MIDDLEWARE = [
    # First: it times the whole response, every other middleware's work included.
    "domain.common.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "domain.common.middleware.CorrelationIdMiddleware",
    "domain.common.api_errors.ApiJsonErrorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Database -------------------------------------------------------------------------
# SQLite (in WAL mode) is the embedded default for a first run; set DATABASE_URL to a
# PostgreSQL URL for anything real. The test suite and CI run on PostgreSQL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if "postgresql" in DATABASES["default"]["ENGINE"]:
    # Django's backend with a health check that polls the socket before it sends SELECT 1
    # (config/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
    # A database host that drops packets (rather than refusing) must not hang requests and
    # workers: give up connecting after a few seconds, and answer 503 / requeue.
    # https://www.postgresql.org/docs/15/libpq-connect.html#LIBPQ-CONNECT-CONNECT-TIMEOUT
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # https://docs.djangoproject.com/en/5.2/ref/databases/#sqlite-notes
    # WAL lets the API read while a worker writes; IMMEDIATE takes the write lock at BEGIN
    # so concurrent writers queue on `timeout` instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

# --- Redis: broker and cache ----------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("CACHE_URL", default=REDIS_URL),
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="conveyor"),
        "TIMEOUT": env.int("CACHE_DEFAULT_TIMEOUT", default=300),
        # No client-side retries: redis-py's default (with backoff) would stall every read for
        # seconds while Redis is down; catalog reads fall back to the database instead.
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2,
                    "retry": Retry(NoBackoff(), 0)},
    }
}

# --- Retention (scheduler/retention.py; README "Retention") ------------------------------
# Days a family of rows is kept once it is finished; 0 keeps it for ever. Nothing live is ever
# pruned whatever these say: queued, running or retrying jobs, events with a job left,
# deliveries not yet settled, running or paused bulk runs, unread inbox items.
# Events, their jobs and attempts, and batch-publish records (Idempotency-Keys are remembered
# this long).
RETENTION_JOBS_DAYS = env.int("RETENTION_JOBS_DAYS", default=30)
RETENTION_TASK_RESULTS_DAYS = env.int("RETENTION_TASK_RESULTS_DAYS", default=7)
# Webhook messages, deliveries and their attempts, notifications, closed digests.
RETENTION_NOTIFICATIONS_DAYS = env.int("RETENTION_NOTIFICATIONS_DAYS", default=30)
# In-app inbox items already read or archived (unread ones stay).
RETENTION_INBOX_DAYS = env.int("RETENTION_INBOX_DAYS", default=180)
# Finished bulk runs, and the CSV input tables of failed ones (resumable until then).
RETENTION_BULK_RUNS_DAYS = env.int("RETENTION_BULK_RUNS_DAYS", default=90)
# The scheduler's run ledger.
RETENTION_SCHEDULE_RUNS_DAYS = env.int("RETENTION_SCHEDULE_RUNS_DAYS", default=30)
# The prune walks each table's primary key PRUNE_BATCH_SIZE keys at a time, one short
# transaction per batch, PRUNE_PAUSE_SECONDS apart; a run stops after PRUNE_MAX_SECONDS and
# the next one resumes where it stopped (domain/common/pruning.py).
PRUNE_BATCH_SIZE = env.int("PRUNE_BATCH_SIZE", default=5000)
PRUNE_PAUSE_SECONDS = env.float("PRUNE_PAUSE_SECONDS", default=0.05)
PRUNE_MAX_SECONDS = env.int("PRUNE_MAX_SECONDS", default=900)

# --- Celery ---------------------------------------------------------------------------
# Read by config/celery.py with namespace="CELERY".
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
# JSON only: pickle would let anyone who can write to the broker run code in a worker.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Acknowledge after the task returns and put the message back if the worker process dies,
# so a crash never loses work (reliability contract #3). Handlers are idempotent (#2).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-acks-late
CELERY_TASK_ACKS_LATE = True
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-reject-on-worker-lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message per process at a time: long jobs don't hold short ones hostage in a prefetch
# buffer. https://docs.celeryq.dev/en/stable/userguide/optimizing.html#prefetch-limits
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
# Redis redelivers an unacknowledged message after the visibility timeout. It must be longer
# than the longest task plus the longest retry countdown (domain/jobs/retry.py caps countdowns at
# 15 minutes), or a message would be delivered twice while it is still being waited on.
# https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=7200),
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A Redis that refuses writes (out of memory under `noeviction`, read-only after a failover)
# answers with an error reply, which kombu counts as a channel error, not a connection error:
# Celery's consumer then stops the whole worker ("Unrecoverable error"), and it stays dead.
# With this, the consumer reconnects with backoff as it does when the connection drops, and
# resumes when Redis accepts writes again; unacknowledged messages are redelivered and the
# claim makes the duplicates harmless.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-channel-error-retry
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
# Keep running tasks going when the broker connection drops: the job finishes and records its
# outcome in the database; the message, unacknowledged, comes back later and the claim refuses
# it. (Celery 6 changes the default to True; pin it so the behaviour does not move.)
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-cancel-long-running-tasks-on-connection-loss
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Publishing from a web request must not hang when Redis is down: a short retry, then the
# outbox relay takes over (the event is already committed).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.1,
    "interval_max": 0.2,
}
# Task events for Flower. https://flower.readthedocs.io/en/latest/prometheus-integration.html
CELERY_WORKER_SEND_TASK_EVENTS = True
# No "task-sent" event from publishers: it doubled the broker writes of every publish (a second
# PUBLISH per message), and Flower shows every task from the worker's own events anyway.
CELERY_TASK_SEND_SENT_EVENT = False
# Results in the database (django-celery-results), with name/args/worker recorded.
# https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html#django-celery-results-using-the-django-orm-cache-as-a-result-backend
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
# How long a task's stored result is kept. The daily prune (`conveyor.maintenance.prune`,
# scheduler/retention.py) deletes older results in short batches; Celery's own
# `celery.backend_cleanup`, which Beat installs whenever this is set, would delete them all in
# one statement (one long transaction on a table of millions), so Conveyor's Beat scheduler
# does not install it. 0 keeps results for ever.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-expires
CELERY_RESULT_EXPIRES = (timedelta(days=RETENTION_TASK_RESULTS_DAYS)
                         if RETENTION_TASK_RESULTS_DAYS else None)
# Schedules live in the database (django-celery-beat); scheduler/ declares them in code.
# LedgerScheduler is django-celery-beat's DatabaseScheduler with slots (scheduler/beat.py).
CELERY_BEAT_SCHEDULER = "scheduler.beat:LedgerScheduler"
# A file Beat touches after every tick, for a liveness probe (scheduler/heartbeat.py; the
# compose file's Beat sets it and its healthcheck reads the file's age). Empty: none.
BEAT_HEARTBEAT_FILE = env("BEAT_HEARTBEAT_FILE", default="")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes the database connection before and after every task unless
# this is set: a new PostgreSQL connection per task, 22% of a no-op job's worker time under
# py-spy (bench/). Workers age connections the way web requests do instead (CONN_MAX_AGE,
# CONN_HEALTH_CHECKS; workers/signals.py), so the fix-up's own recycling is set out of reach.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1_000_000_000)
# Task modules live in tasks/, outside the Django apps, so Celery's autodiscovery would not
# find them; importing the package imports every module in it (tasks/__init__.py).
CELERY_IMPORTS = ("tasks",)

# --- Conveyor -------------------------------------------------------------------------
# Largest request body the API parses; larger bodies get 413 before any work is done.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1_048_576)
API_MAX_BATCH_BODY_BYTES = env.int("API_MAX_BATCH_BODY_BYTES", default=16_777_216)
API_MAX_BATCH_EVENTS = env.int("API_MAX_BATCH_EVENTS", default=500)
# Whatever an event type's schema allows, one payload stays this small and this shallow.
API_MAX_PAYLOAD_BYTES = env.int("API_MAX_PAYLOAD_BYTES", default=65_536)
API_MAX_PAYLOAD_DEPTH = env.int("API_MAX_PAYLOAD_DEPTH", default=16)
# Any JSON request body nests at most this deep (a payload sits two or three levels down).
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=64)
# An API key is looked up once per this many seconds per process, not on every request; a key
# revoked, expired or changed stops working everywhere within this time (0: look up every time).
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=1.0)
# Who hands committed jobs to the broker: "background" (default), one dispatcher thread per
# process, so a request answers right after its commit; "inline", the committing thread itself
# before it returns (what the in-process tests use, to see the send they caused).
OUTBOX_SEND = env.str("OUTBOX_SEND", default="background")
if OUTBOX_SEND not in ("background", "inline"):
    raise ImproperlyConfigured(
        f"OUTBOX_SEND must be 'background' or 'inline', not {OUTBOX_SEND!r}")
# At most this many jobs per dispatcher round (one producer connection, one stamping UPDATE),
# and at most this many waiting for the thread: beyond it a request sends its own jobs.
OUTBOX_DISPATCH_MAX_JOBS = env.int("OUTBOX_DISPATCH_MAX_JOBS", default=2000)
# Jobs committed but not yet on the broker for this long are enqueued by the outbox relay.
OUTBOX_RELAY_GRACE_SECONDS = env.int("OUTBOX_RELAY_GRACE_SECONDS", default=10)
OUTBOX_RELAY_BATCH_SIZE = env.int("OUTBOX_RELAY_BATCH_SIZE", default=500)
# A queued job handed to the broker this long ago and never started is sent again (its message
# was lost, e.g. in a Redis restart without persistence). Duplicates are refused by the claim.
OUTBOX_STALE_SECONDS = env.int("OUTBOX_STALE_SECONDS", default=1800)
# Sooner when its queue is empty: a queued job handed over this long ago whose queue holds no
# message lost it (an evicting or restarted Redis), and is sent again.
OUTBOX_LOST_SECONDS = env.int("OUTBOX_LOST_SECONDS", default=30)
# A running job holds a lease that its worker renews every third of this (workers/leases.py);
# a lease expired for longer than ORPHAN_GRACE_SECONDS means the worker died (kill -9, OOM, a
# lost machine), and the orphan rescue (Beat, every 5 s) runs the job again.
JOB_LEASE_SECONDS = env.int("JOB_LEASE_SECONDS", default=10)
ORPHAN_GRACE_SECONDS = env.int("ORPHAN_GRACE_SECONDS", default=5)
CATALOG_CACHE_TIMEOUT = env.int("CATALOG_CACHE_TIMEOUT", default=300)

# Bulk runs (domain/bulk/; README "Bulk updates"). A request's `chunk_size` and `throttle`
# override the first five for its run.
BULK_CHUNK_SIZE = env.int("BULK_CHUNK_SIZE", default=1000)  # the first chunk's rows
BULK_ADAPTIVE = env.bool("BULK_ADAPTIVE", default=True)  # chunk size follows the target
BULK_TARGET_CHUNK_SECONDS = env.float("BULK_TARGET_CHUNK_SECONDS", default=0.5)
BULK_PAUSE_SECONDS = env.float("BULK_PAUSE_SECONDS", default=0.0)  # between chunks
BULK_LOCK_TIMEOUT_SECONDS = env.float("BULK_LOCK_TIMEOUT_SECONDS", default=2.0)  # per chunk
BULK_MIN_CHUNK_SIZE = env.int("BULK_MIN_CHUNK_SIZE", default=100)
BULK_MAX_CHUNK_SIZE = env.int("BULK_MAX_CHUNK_SIZE", default=250_000)
# A chunk that meets rows locked past the lock timeout is retried, halved, this many times
# before the attempt fails (the job then retries from the checkpoint).
BULK_LOCK_RETRIES = env.int("BULK_LOCK_RETRIES", default=10)
# One job runs chunks for at most this long, then hands the run back to the broker (not an
# attempt): a run of any length stays inside CELERY_TASK_SOFT_TIME_LIMIT.
BULK_SLICE_SECONDS = env.float("BULK_SLICE_SECONDS", default=60.0)
BULK_CSV_MAX_BYTES = env.int("BULK_CSV_MAX_BYTES", default=256 * 1024 * 1024)
# The project's own Redis keys (overlap locks, rate-limit counters) in REDIS_URL.
REDIS_KEY_PREFIX = env("REDIS_KEY_PREFIX", default="conveyor:")
# Requests per API key and scope family; "publish" covers both single and batch publishes.
# Notation as DRF's: "<count>/<s|m|h|d>". Over the limit: 429 with Retry-After.
API_THROTTLE_RATES = env.dict("API_THROTTLE_RATES", default={
    "publish": "60000/m",
    "read": "120000/m",
    "write": "6000/m",
})
# A process takes up to this many requests of a key's window from Redis at once (at most 1% of
# the limit) and counts them locally: one Redis round trip per share, not per request.
API_THROTTLE_LEASE_MAX = env.int("API_THROTTLE_LEASE_MAX", default=100)

# --- Webhooks (domain/notifications; README "Webhooks for operators") ----------------
# Outbound HTTP: a connection must open within WEBHOOK_CONNECT_TIMEOUT and the receiver must
# keep sending within WEBHOOK_READ_TIMEOUT; quick connection failures (refused, reset, a DNS
# error) are tried again inside the same attempt for up to WEBHOOK_CONNECT_RETRY_SECONDS.
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT", default=5.0)
WEBHOOK_READ_TIMEOUT = env.float("WEBHOOK_READ_TIMEOUT", default=15.0)
WEBHOOK_CONNECT_RETRY_SECONDS = env.float("WEBHOOK_CONNECT_RETRY_SECONDS", default=3.0)
# Seconds between attempts: after the n-th failed attempt the delivery waits the n-th figure
# (±10% jitter); one attempt more than figures. About 27.6 hours in all, as Svix's schedule.
WEBHOOK_RETRY_SCHEDULE = env.list(
    "WEBHOOK_RETRY_SCHEDULE", cast=int, default=[5, 300, 1800, 7200, 18000, 36000, 36000])
# Networks the SSRF guard lets through although they are not public (CIDRs, comma-separated).
WEBHOOK_ALLOWED_NETWORKS = env.list("WEBHOOK_ALLOWED_NETWORKS", default=[])
# In flight at once: per worker process, and per endpoint in a worker process.
WEBHOOK_MAX_IN_FLIGHT = env.int("WEBHOOK_MAX_IN_FLIGHT", default=256)
WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = env.int("WEBHOOK_ENDPOINT_MAX_IN_FLIGHT", default=32)
# A delivery task waits this long for its batch's answers; a receiver still answering after
# it is recorded when its answer comes, and the worker thread takes its next message.
WEBHOOK_BATCH_WAIT_SECONDS = env.float("WEBHOOK_BATCH_WAIT_SECONDS", default=2.0)
# At most this many bytes of a receiver's answer are kept with the attempt.
WEBHOOK_RESPONSE_EXCERPT_BYTES = env.int("WEBHOOK_RESPONSE_EXCERPT_BYTES", default=1024)
# A rotated-out secret keeps signing (beside the new one) this long.
WEBHOOK_SECRET_OVERLAP_SECONDS = env.int("WEBHOOK_SECRET_OVERLAP_SECONDS", default=86_400)
# Health: an endpoint whose every attempt failed for this long and this many times is
# `degraded` (its owner is warned: webhook_endpoint.degraded), and later `disabled`.
WEBHOOK_DEGRADE_AFTER_SECONDS = env.int("WEBHOOK_DEGRADE_AFTER_SECONDS", default=86_400)
WEBHOOK_DEGRADE_MIN_FAILURES = env.int("WEBHOOK_DEGRADE_MIN_FAILURES", default=5)
WEBHOOK_DISABLE_AFTER_SECONDS = env.int("WEBHOOK_DISABLE_AFTER_SECONDS", default=432_000)
WEBHOOK_DISABLE_MIN_FAILURES = env.int("WEBHOOK_DISABLE_MIN_FAILURES", default=15)
# Circuit breaker: this many failed attempts in a row open it for the cool-down (doubling on
# each failed probe, up to the maximum); its deliveries wait, parked, without using attempts.
WEBHOOK_CIRCUIT_FAILURES = env.int("WEBHOOK_CIRCUIT_FAILURES", default=5)
WEBHOOK_CIRCUIT_COOLDOWN_SECONDS = env.int("WEBHOOK_CIRCUIT_COOLDOWN_SECONDS", default=30)
WEBHOOK_CIRCUIT_COOLDOWN_MAX_SECONDS = env.int("WEBHOOK_CIRCUIT_COOLDOWN_MAX_SECONDS",
                                              default=600)
# A delivery waits in the worker at most this long for its endpoint's rate limit; a longer
# wait goes back to the queue (its attempt not counted).
WEBHOOK_RATE_WAIT_SECONDS = env.float("WEBHOOK_RATE_WAIT_SECONDS", default=2.0)
# A rate slot is held for a second after its request went out, plus this margin for the
# network and the receiver's own timing (domain/notifications/ratelimit.py).
WEBHOOK_RATE_MARGIN_SECONDS = env.float("WEBHOOK_RATE_MARGIN_SECONDS", default=0.05)
# Which event types have a subscribed endpoint is read once per this many seconds per process.
WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS = env.float("WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS",
                                                default=1.0)

# --- Email and in-app notifications (domain/notifications; README "Notifications") ---
# EMAIL_URL is django-environ's: smtp://user:password@host:587, smtp+tls://…, smtps://…,
# consolemail:// (the messages printed), dummymail://. Without it: the console backend where
# DEBUG is on (the local runstack), SMTP to localhost:25 otherwise.
_email = env.email_url_config(env("EMAIL_URL", default="")
                              or ("consolemail://" if DEBUG else "smtp://localhost:25"))
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
if EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend":
    # Django's SMTP backend, keeping each message's reply for its attempt row.
    EMAIL_BACKEND = "domain.notifications.email_backend.EmailBackend"
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
# Seconds for the SMTP connection and each reply.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=15)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Conveyor <notifications@localhost>")
SERVER_EMAIL = env("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
# The domain of every email's Message-ID (<delivery id>@domain): the same delivery sent twice
# carries the same Message-ID, so a receiving system can tell the copies apart.
EMAIL_MESSAGE_ID_DOMAIN = env("EMAIL_MESSAGE_ID_DOMAIN", default="conveyor.localhost")
# Seconds between an email delivery's attempts (±10% jitter; one attempt more than figures):
# 4xx replies and connection failures retry; a 5xx reply fails that delivery at once.
EMAIL_RETRY_SCHEDULE = env.list("EMAIL_RETRY_SCHEDULE", cast=int,
                                default=[30, 120, 600, 1800, 3600, 10800])
# Recipients of one POST /api/v1/notifications.
NOTIFICATIONS_MAX_RECIPIENTS = env.int("NOTIFICATIONS_MAX_RECIPIENTS", default=1000)
# The API's public address, for the one-click List-Unsubscribe link in emails of
# categories that are not required (RFC 8058); empty: no List-Unsubscribe header.
NOTIFICATIONS_PUBLIC_URL = env("NOTIFICATIONS_PUBLIC_URL", default="")
# A template's digest window (seconds) other than the one its code declares, by name:
# NOTIFICATION_DIGEST_WINDOWS=comment_added=120,other=30.
NOTIFICATION_DIGEST_WINDOWS = env.dict("NOTIFICATION_DIGEST_WINDOWS", cast={"value": int},
                                       default={})

# --- REST framework and OpenAPI -------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["domain.access.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["domain.access.auth.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["domain.access.throttling.ApiKeyRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["domain.common.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["domain.common.renderers.OrjsonRenderer"],
    "EXCEPTION_HANDLER": "domain.common.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Conveyor API",
    "DESCRIPTION": "Publish domain events and trigger jobs; poll their status.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI from our own static files (drf-spectacular-sidecar), not from a CDN at
    # @latest: /api/docs works offline and shows the version pinned in requirements.txt.
    # https://drf-spectacular.readthedocs.io/en/latest/settings.html
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "domain.jobs.models.JobStatus",
        "ProductStatusEnum": "domain.catalog.models.ProductStatus",
        "DeliveryStatusEnum": "domain.notifications.models.DeliveryStatus",
        "ChannelEnum": "domain.notifications.models.Channel",
        "PeopleChannelEnum": "domain.notifications.notification_apis.PEOPLE_CHANNEL_CHOICES",
        "EndpointStateEnum": "domain.notifications.models.EndpointState",
        "InboxStateEnum": "domain.notifications.models.InboxState",
        "QueueNameEnum": "workers.selectors.queue_names",
    },
}

# --- Logging: one line per record, the correlation id on every one -------------------
# LOG_FORMAT: `text`, key=value lines for a terminal (this default; local and test settings),
# or `json`, one JSON object per line with the job, event, task, queue and worker it is about
# (production's default). domain/common/logging.py; README "Logs".
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMATS = ("text", "json")
LOG_FORMAT = env("LOG_FORMAT", default="text")
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "correlation": {"()": "domain.common.logging.CorrelationIdFilter"},
        "redact": {"()": "domain.common.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "text": {
            "format": "%(asctime)s level=%(levelname)s logger=%(name)s "
            "correlation_id=%(correlation_id)s %(message)s"
        },
        "json": {"()": "domain.common.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["correlation", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}

# The queue health check (every minute): seconds it waits for the workers' replies.
QUEUE_HEALTH_INSPECT_TIMEOUT = env.float("QUEUE_HEALTH_INSPECT_TIMEOUT", default=1.0)
# Queue pause and worker presence (README "Queues: pause and resume"). Every worker writes its
# presence (the queues it consumes) to Redis this often, and reads the paused queues from the
# database as often (workers/steering.py); a pause or resume also reaches running workers at
# once by a broadcast.
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=5.0)
# A worker seen within this many seconds is live: /readyz, GET /api/v1/queues and
# `manage.py worker_alive` judge by it.
WORKER_SEEN_SECONDS = env.float("WORKER_SEEN_SECONDS", default=60.0)
# A process reads which queues are paused at most once per this many seconds (the claim asks
# before every job; domain/jobs/selectors.queue_is_paused).
QUEUE_PAUSE_CACHE_SECONDS = env.float("QUEUE_PAUSE_CACHE_SECONDS", default=1.0)
# The nightly deactivation of customers inactive for this many days (customers.deactivate_inactive).
CUSTOMERS_INACTIVE_DAYS = env.int("CUSTOMERS_INACTIVE_DAYS", default=365)

# --- Metrics (GET /metrics; README "Metrics") --------------------------------------------
# Who may scrape: a request bearing the token (`Authorization: Bearer <token>`), or one whose
# TCP peer address (REMOTE_ADDR, never X-Forwarded-For) is in one of the networks. With
# neither set, /metrics answers 404 (the local settings allow loopback).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
# Each process adds its counts to Redis at most this often (and when it exits); 0: only when
# it exits or serves a scrape (domain/common/metrics.py).
METRICS_FLUSH_SECONDS = env.float("METRICS_FLUSH_SECONDS", default=1.0)
# Gauges (jobs by status, queue depths, endpoint states) are computed at most once per this
# many seconds, whatever the number of scrapers; 0: on every scrape.
METRICS_GAUGE_CACHE_SECONDS = env.float("METRICS_GAUGE_CACHE_SECONDS", default=5.0)


def _networks(name: str, cidrs: list[str]) -> list[str]:
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {cidr!r} is not a network ({exc}).") from exc
    return cidrs


METRICS_ALLOWED_NETWORKS = _networks("METRICS_ALLOWED_NETWORKS", METRICS_ALLOWED_NETWORKS)

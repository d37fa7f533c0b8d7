"""Development defaults: DEBUG on, embedded-friendly, never for production."""

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, _networks, env

# `runstack` and other developer tools: never in production.
INSTALLED_APPS = [*INSTALLED_APPS, "devtools"]

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env(
    "DJANGO_SECRET_KEY",
    default="local-only-insecure-key-3b1e9c0a7f5d4e2b8a6c1d0e9f8a7b6c5d4e3f2a1b0c",
)
# Serve static files (admin, Swagger UI) straight from the apps under gunicorn.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Credentials the run command creates and prints for the local stack. Production has none.
LOCAL_ADMIN_USERNAME = env("LOCAL_ADMIN_USERNAME", default="admin")
LOCAL_ADMIN_PASSWORD = env("LOCAL_ADMIN_PASSWORD", default="admin")
FLOWER_USER = env("FLOWER_USER", default="admin")
FLOWER_PASSWORD = env("FLOWER_PASSWORD", default="admin")
DEMO_API_KEY = env("DEMO_API_KEY", default="cvk_demo_local_only_do_not_use_in_production")
# /metrics for a Prometheus on this machine, with no token (production allows nobody unless
# told: README "Metrics").
METRICS_ALLOWED_NETWORKS = _networks("METRICS_ALLOWED_NETWORKS", env.list(
    "METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"]))
# Webhooks to a receiver on this machine (the SSRF guard refuses loopback unless allowed).
WEBHOOK_ALLOWED_NETWORKS = env.list("WEBHOOK_ALLOWED_NETWORKS", default=["127.0.0.1/32"])
# Emails printed by the console backend unless EMAIL_URL names a real server (base.py read
# EMAIL_URL before DEBUG was on here, so its default must be set again).
if not env("EMAIL_URL", default=""):
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
NOTIFICATIONS_PUBLIC_URL = env("NOTIFICATIONS_PUBLIC_URL", default="http://127.0.0.1:8000")

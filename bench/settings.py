"""The benchmark's Django settings: production's, served over plain HTTP on 127.0.0.1.

The suite sets DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS and DJANGO_SECURE_SSL_REDIRECT=False
(no TLS proxy in front of gunicorn here), and raises the per-key throttle far above what the
load generator sends, so the throttle still runs on every request but never answers 429.
"""

from config.settings.production import *  # noqa: F403

# The project's URLs plus the baseline views (bench/urls.py), served by the same gunicorn and
# middleware.
ROOT_URLCONF = "bench.urls"

# The suite's own job kind and event type (bench/solo.py): a job alone on its message.
INSTALLED_APPS = [*INSTALLED_APPS, "bench.apps.BenchConfig"]  # noqa: F405

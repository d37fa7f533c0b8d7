"""The test settings with production's database connections, for a gunicorn under a database
outage: persistent (CONN_MAX_AGE 60, as config/settings/base.py) and health-checked
(CONN_HEALTH_CHECKS). The test settings close every connection after its request, which would
hide what matters in an outage: a connection opened before it, found dead after it."""

from config.settings.test import *  # noqa: F403
from config.settings.test import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 60

"""The worker liveness probe for containers: exit 0 if the worker's heartbeat is fresh, 1 if
not (never seen, stopped, or its consumer's event loop has not turned for --max-age seconds).

    python manage.py worker_alive [--hostname celery@$HOSTNAME] [--max-age SECONDS]

It reads the worker's presence in Redis (workers/presence.py): no broadcast, no waiting for
the worker to answer, unlike `celery inspect ping`. Redis not answering is exit 1 too: the
worker cannot be seen alive then.
"""

from __future__ import annotations

import socket

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from workers.presence import workers_seen


class Command(BaseCommand):
    help = "Exit 0 if this worker's heartbeat is fresh, 1 otherwise (a container probe)."

    def add_arguments(self, parser):
        parser.add_argument("--hostname", default=f"celery@{socket.gethostname()}",
                            help="the worker's node name (-n); default celery@<this host>, "
                            "as compose/celery/worker/start names it")
        parser.add_argument("--max-age", type=float, default=None,
                            help="seconds; default WORKER_SEEN_SECONDS "
                            f"({settings.WORKER_SEEN_SECONDS:g})")

    def handle(self, *args, hostname: str, max_age: float | None, **options):
        max_age = settings.WORKER_SEEN_SECONDS if max_age is None else max_age
        try:
            record = workers_seen(max_age=max_age).get(hostname)
        except redis.exceptions.RedisError as exc:
            raise CommandError(f"{hostname}: presence unknown, Redis did not answer: {exc}",
                               returncode=1) from exc
        if record is None:
            raise CommandError(f"{hostname}: not seen in the last {max_age:g} s", returncode=1)
        self.stdout.write(f"{hostname}: alive, seen at {record['seen_at']}, pid {record['pid']}, "
                          f"consuming {','.join(record['queues']) or 'nothing'}")

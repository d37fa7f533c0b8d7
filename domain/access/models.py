"""API keys and their scopes: who may call the API, and for what."""

import hashlib
import uuid

from django.db import models
from django.utils import timezone

from domain.access.keycache import key_cache


class Scopes(models.TextChoices):
    """What an API key may do. A key holds a list of these."""

    EVENTS_PUBLISH = "events:publish", "Publish events (and read what it published)"
    EVENTS_READ = "events:read", "Read events"
    JOBS_READ = "jobs:read", "Read jobs"
    JOBS_WRITE = "jobs:write", "Trigger, retry and cancel jobs"
    PRODUCTS_READ = "products:read", "Read the catalog"
    PRODUCTS_WRITE = "products:write", "Change the catalog"
    ORDERS_READ = "orders:read", "Read orders"
    ORDERS_WRITE = "orders:write", "Ship orders (and read them)"
    WEBHOOKS_MANAGE = "webhooks:manage", "Manage webhook endpoints (and read their deliveries)"
    NOTIFICATIONS_WRITE = "notifications:write", ("Send notifications, change inboxes' read "
                                                  "states and recipients' preferences")
    NOTIFICATIONS_READ = "notifications:read", ("Read notifications, deliveries and their "
                                                "attempts, inboxes and preferences")
    BULK_WRITE = "bulk:write", "Start, pause, resume and cancel bulk runs (and read them)"
    BULK_READ = "bulk:read", "Read bulk runs"
    SCHEDULES_READ = "schedules:read", "Read schedules and their runs"
    SCHEDULES_WRITE = "schedules:write", ("Pause, resume and run schedules now (and read "
                                          "them)")
    ADMIN = "admin", "See every key's events and jobs; read, pause and resume queues"


def hash_api_key(raw_key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table keeps the name it had when keys lived in domain/common, so existing
        # databases move over with no copy (migrations: access.0001, common.0002).
        db_table = "common_apikey"
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        key_cache.forget(self.key_hash)  # a revocation or a scope change applies here at once

    def delete(self, *args, **kwargs):
        key_cache.forget(self.key_hash)
        return super().delete(*args, **kwargs)

    def is_active(self, at=None) -> bool:
        at = at or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > at

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or Scopes.ADMIN in self.scopes


class AuditAction(models.TextChoices):
    """What an operator did. Every action that changes work or its flow is one of these."""

    REPLAY = "replay", "Replay"
    CANCEL = "cancel", "Cancel"
    PAUSE = "pause", "Pause"
    RESUME = "resume", "Resume"
    RUN = "run", "Run now"
    RECOVER = "recover", "Recover"
    ROTATE = "rotate", "Rotate secret"
    REVOKE = "revoke", "Revoke"


class ActorKind(models.TextChoices):
    USER = "user", "Admin user"
    API_KEY = "api_key", "API key"
    COMMAND = "command", "Command line"


class AuditEntry(models.Model):
    """One operator action: who, when, what, on what, and how many rows it touched.

    A table of its own rather than Django's LogEntry: LogEntry needs a Django user and one
    object, while an action here may come from an API key or the command line and touch
    thousands of rows by a filter (the filter is kept in `detail`)."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor = models.CharField(max_length=200, help_text="Username, API key name and prefix, "
                             "or the OS user who ran the command.")
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    target_type = models.CharField(max_length=32, help_text="queue, schedule, job, jobs, "
                                   "webhook_endpoint, bulk_run, api_key …")
    target = models.CharField(max_length=255, blank=True, default="",
                              help_text="The name or id acted on; a summary for a filter.")
    count = models.PositiveIntegerField(default=1, help_text="Rows the action changed.")
    detail = models.JSONField(default=dict, blank=True)
    correlation_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target_type} " \
               f"{self.target} ({self.count})"

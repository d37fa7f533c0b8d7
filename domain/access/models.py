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
    ADMIN = "admin", "See every key's events and jobs"


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

"""What an API key may see."""

from __future__ import annotations

from django.db.models import QuerySet

from domain.access.models import ApiKey, AuditEntry, Scopes


def visible_to(queryset: QuerySet, api_key: ApiKey | None) -> QuerySet:
    """Rows the key created (the model has an `api_key` field); every row for an `admin` key
    or for no key at all (operators' commands, the admin site)."""
    if api_key is None or Scopes.ADMIN in api_key.scopes:
        return queryset
    return queryset.filter(api_key=api_key)


def audit_latest(*, limit: int = 20) -> list[AuditEntry]:
    """The newest operator actions first (the `at` index)."""
    return list(AuditEntry.objects.order_by("-at", "-id")[:limit])

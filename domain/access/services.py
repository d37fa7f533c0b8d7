import secrets
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from domain.access.models import ApiKey, Scopes, hash_api_key
from domain.common.errors import ValidationFailed

KEY_PREFIX = "cvk_"


def parse_scopes(raw: str | list[str]) -> list[str]:
    scopes = [s.strip() for s in raw.split(",")] if isinstance(raw, str) else list(raw)
    scopes = [s for s in scopes if s]
    unknown = sorted(set(scopes) - set(Scopes.values))
    if unknown:
        raise ValidationFailed(
            "Unknown scope.", details={"unknown": unknown, "allowed": sorted(Scopes.values)}
        )
    return sorted(set(scopes))


@transaction.atomic
def api_key_create(
    *, name: str, scopes: list[str], expires_at: datetime | None = None, raw_key: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and only its hash is stored."""
    raw_key = raw_key or KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name,
        prefix=raw_key[:12],
        key_hash=hash_api_key(raw_key),
        scopes=parse_scopes(scopes),
        expires_at=expires_at,
    )
    return key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key

"""Bearer API-key authentication and per-view scope checks."""

import time
from datetime import timedelta

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from domain.access.models import ApiKey, hash_api_key

# Writing last_used_at on every request would add a write to every read; once a minute is
# enough to tell an operator whether a key is still in use.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiPrincipal:
    """What DRF puts in request.user for an API key (there is no Django user)."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class _KeyCache:
    """The API keys this process authenticated recently, by hash, for API_KEY_CACHE_SECONDS.

    Why: the key lookup was a SELECT on every request (13% of a single publish). A key that
    is revoked, expires, loses a scope or is deleted stops working here within the TTL (1 s by
    default), in every process, with no message to send: each entry is simply too old then.
    In the process that made the change it stops at once (the receivers below). Expiry is
    checked on every request against the clock, cached or not. Unknown keys are not cached
    (each one costs its SELECT, as before), and the cache holds at most MAX_ENTRIES keys.
    """

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[ApiKey, float]] = {}

    def get(self, key_hash: str) -> ApiKey | None:
        entry = self._entries.get(key_hash)
        if entry is None or time.monotonic() - entry[1] >= settings.API_KEY_CACHE_SECONDS:
            return None
        return entry[0]

    def put(self, key: ApiKey) -> None:
        if settings.API_KEY_CACHE_SECONDS <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[key.key_hash] = (key, time.monotonic())

    def forget(self, key_hash: str) -> None:
        self._entries.pop(key_hash, None)


key_cache = _KeyCache()


@receiver([post_save, post_delete], sender=ApiKey, dispatch_uid="access.forget_cached_key")
def _forget_changed_key(sender, instance: ApiKey, **kwargs) -> None:
    key_cache.forget(instance.key_hash)


def _lookup(key_hash: str) -> ApiKey:
    key = key_cache.get(key_hash)
    if key is None:
        try:
            key = ApiKey.objects.get(key_hash=key_hash)
        except ApiKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        key_cache.put(key)
    return key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != "bearer" or not raw_key.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        key = _lookup(hash_api_key(raw_key.strip()))
        now = timezone.now()
        if not key.is_active(now):
            raise exceptions.AuthenticationFailed("API key is revoked or expired.")
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now  # the cached object too, or every request would write
        return ApiPrincipal(key), key

    def authenticate_header(self, request) -> str:
        return self.keyword


class HasScope(permissions.BasePermission):
    """Views declare `required_scopes = {"GET": (...), "POST": (...)}`; any one scope suffices.

    A view without the attribute is closed: forgetting to declare scopes must not open it.
    """

    message = "This API key lacks the scope this endpoint needs."

    def has_permission(self, request, view) -> bool:
        required = getattr(view, "required_scopes", None)
        if required is None:
            return False
        if not request.user or not getattr(request.user, "is_authenticated", False):
            raise exceptions.NotAuthenticated("An API key is required.")
        if request.method == "OPTIONS" or not hasattr(view, request.method.lower()):
            # OPTIONS describes the endpoint (no data); an unknown method is DRF's 405.
            return True
        method = "GET" if request.method == "HEAD" else request.method
        scopes = required.get(method, ())
        if not scopes:
            return False
        key: ApiKey = request.auth
        if any(key.has_scope(s) for s in scopes):
            return True
        self.message = f"This API key needs one of the scopes: {', '.join(scopes)}."
        return False


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "domain.access.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "Authorization: Bearer <api key>"}

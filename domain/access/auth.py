"""Bearer API-key authentication and per-view scope checks."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from domain.access.keycache import key_cache
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

"""One application error type, rendered as one JSON error shape for every 4xx/5xx:

    {"error": {"code": "...", "message": "...", "details": {...}}}

A database that does not answer is not a bug: it is a 503 with Retry-After in the same shape
(DESIGN.md #7), so a client retries what was not stored instead of giving up on a 500.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from domain.common.bodies import discard_unread_body

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A failure the caller can act on. Services raise it; the API renders it."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 code: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code


class ValidationFailed(ApplicationError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "validation_failed"


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class TransientError(Exception):
    """Raised by a service when trying again later may succeed (timeouts, 5xx, throttling)."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Raised by a service when trying again cannot succeed (bad input, 4xx, missing rows)."""


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "Request body is too large."


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


# What the database driver raises when the server cannot be reached or went away mid-request
# (connection refused, shutting down or starting up, connection closed, and the transient
# operational failures: lock or statement timeouts, deadlocks, serialization failures). Django
# wraps every driver's errors in these classes; programming and data errors are not among them.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
# Seconds a client is asked to wait: long enough not to hammer a recovering database, short
# enough that an outage of seconds costs a client seconds.
RETRY_AFTER_SECONDS = 5


def database_unavailable(exc: BaseException | None) -> bool:
    return isinstance(exc, DATABASE_UNAVAILABLE)


def service_unavailable(exc: BaseException) -> tuple[dict, dict[str, str]]:
    """The body and headers of the 503 for a database that does not answer. One warning line
    per answer, with the driver's message and no traceback: during an outage there is one per
    request, and a traceback would say nothing the message does not."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    logger.warning("database unavailable, answered 503 error=%s: %s", type(exc).__name__,
                   message)
    body = error_body("service_unavailable",
                      "The database is unavailable; retry after the seconds in Retry-After.",
                      {"unavailable": "database"})
    return body, {"Retry-After": str(RETRY_AFTER_SECONDS)}


def service_unavailable_response(exc: BaseException) -> JsonResponse:
    body, headers = service_unavailable(exc)
    return JsonResponse(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


# DRF's own exceptions, mapped to our codes. Serializer validation is a 422 (the JSON was
# well-formed but not acceptable); only unparsable bodies are a 400.
_DRF_CODES: dict[type, str] = {
    exceptions.ParseError: "malformed_json",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    _drain(context)
    if database_unavailable(exc):  # e.g. the API key lookup, the first query of every request
        body, headers = service_unavailable(exc)
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("validation_failed", "The request did not pass validation.",
                       _as_details(exc.detail)),
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if isinstance(exc, exceptions.APIException):
        code = _DRF_CODES.get(type(exc)) or getattr(exc, "default_code", "error")
        message = exc.detail if isinstance(exc.detail, str) else exc.default_detail
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None) is not None:
            headers["Retry-After"] = str(int(exc.wait))
        return Response(error_body(code, str(message)), status=exc.status_code, headers=headers)
    return None  # a real bug: Django's handler500 renders it (and logs the traceback)


def _drain(context: dict) -> None:
    """Read and drop what the client is still sending before it is answered (a 401, 403, 415
    or 429 comes before any parser): against the view's own limit, so a refused batch is
    drained like an accepted one would be read. See domain/common/parsers.discard_body."""
    request, view = context.get("request"), context.get("view")
    django_request = getattr(request, "_request", None)
    if django_request is not None:
        limit = getattr(view, "max_body_bytes", None) or settings.API_MAX_BODY_BYTES
        discard_unread_body(django_request, limit=limit)


def _as_details(detail: Any) -> dict:
    """Turn DRF's nested ErrorDetail structure into plain JSON under a dict."""
    plain = _plain(detail)
    return plain if isinstance(plain, dict) else {"non_field_errors": plain}


def _plain(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {str(k): _plain(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_plain(v) for v in detail]
    return str(detail)


def json_not_found(request, exception=None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def json_server_error(request) -> JsonResponse:
    """handler500. Django calls it while handling the exception, so a database that does not
    answer (outside any API view: the admin, a middleware) is still the 503, not a 500."""
    exc = sys.exc_info()[1]
    if database_unavailable(exc):
        return service_unavailable_response(exc)
    return JsonResponse(error_body("internal_error", "Internal server error."), status=500)

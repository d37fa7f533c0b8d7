"""Every error answered under /api/ is the one JSON error shape, whoever produced it.

DRF's exception handler covers the API views, and a catch-all route (config/urls.py) answers
unknown /api/ paths. What is left are errors rendered by something else: Django's DEBUG pages
(the technical 500), the HTML or YAML renderers of the schema and docs views (a 405 on
`POST /api/docs`), Django's plain 400 for a bad Host header. This middleware rewrites those
into the JSON shape. It only changes the body: the status, the headers (`Allow`,
`Retry-After`, ...) and the logging (the traceback of a 500 is logged before the response
gets here) stay as they were. A database that does not answer in a view outside DRF (which
renders it itself) is the 503 with Retry-After, with DEBUG on too (domain/common/errors.py).

A Host header outside ALLOWED_HOSTS is answered with the JSON 400 (`disallowed_host`) on every
path, not only under /api/: such a request is for no page of this site, so the admin's and the
health probes' HTML conventions do not apply to it, and a client probing with a wrong name
(a proxy, a load balancer's check) reads the same shape everywhere. Static files are served
before the Host is looked at (WhiteNoise), and gunicorn answers requests it cannot parse
itself, with its own short HTML 400, before Django sees them.

It also reads and drops a request body nothing read before an error was answered, up to
twice API_MAX_BODY_BYTES, for the reason domain/common/parsers.discard_body gives: otherwise a
client still sending sees a connection reset instead of the answer. An error raised in an API
view was drained already, against that view's own limit, by api_exception_handler
(domain/common/errors.py); this covers the rest (an unknown path, the docs views).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse

from domain.common.bodies import discard_unread_body
from domain.common.errors import database_unavailable, error_body, service_unavailable_response

API_PATH = re.compile(r"^/api(?:/|$)")

# Codes as DRF's errors name them (domain/common/errors.py), so a client sees one vocabulary.
_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "internal_error",
    503: "service_unavailable",
}


def is_api_path(path_info: str) -> bool:
    return API_PATH.match(path_info) is not None


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


def _host_disallowed(request: HttpRequest) -> bool:
    """Whether this request's Host is one Django refuses (the cause of its plain 400)."""
    try:
        request.get_host()
    except DisallowedHost:
        return True
    return False


def _as_json_error(request: HttpRequest, response: HttpResponse,
                   host_disallowed: bool = False) -> JsonResponse:
    data = getattr(response, "data", None)  # a DRF Response rendered as HTML or YAML
    if isinstance(data, dict) and set(data) == {"error"}:
        body = data
    elif host_disallowed:
        body = error_body("disallowed_host",
                          "The Host header names a host this server does not serve.")
    elif response.status_code == 405:
        body = error_body("method_not_allowed", f'Method "{request.method}" not allowed.')
    else:
        body = error_body(_CODES.get(response.status_code, "error"), f"{response.reason_phrase}.")
    json_response = JsonResponse(body, status=response.status_code)
    for header, value in response.items():
        if header.lower() not in ("content-type", "content-length"):
            json_response[header] = value
    json_response.cookies = response.cookies
    return json_response


class ApiJsonErrorsMiddleware:
    """Rewrites a non-JSON 4xx/5xx answer to a request under /api/, and the 400 for a
    disallowed Host on any path, into the JSON error shape."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 400:
            return response
        # Only a 400 can come from the Host check; the check runs on error answers alone.
        host_disallowed = response.status_code == 400 and _host_disallowed(request)
        if not (host_disallowed or is_api_path(request.path_info)):
            return response
        discard_unread_body(request, limit=settings.API_MAX_BODY_BYTES)
        if host_disallowed or (not response.streaming and not _is_json(response)):
            return _as_json_error(request, response, host_disallowed)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception
                          ) -> HttpResponse | None:
        """A view under /api/ that met a database that does not answer: the 503, before
        Django's 500 (or, with DEBUG, its technical page) takes the exception."""
        if is_api_path(request.path_info) and database_unavailable(exception):
            return service_unavailable_response(exception)
        return None

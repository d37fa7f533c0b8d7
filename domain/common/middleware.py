from time import perf_counter

from django.conf import settings

from domain.common.correlation import (
    HEADER,
    clean_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)
from domain.common.metrics import HTTP_BUCKETS, Counter, Histogram


class CorrelationIdMiddleware:
    """Takes X-Correlation-ID from the caller (or makes one) and echoes it on the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        correlation_id = clean_correlation_id(request.headers.get(HEADER))
        request.correlation_id = correlation_id
        token = set_correlation_id(correlation_id)
        try:
            response = self.get_response(request)
        finally:
            reset_correlation_id(token)
        response[HEADER] = correlation_id
        return response


# The route label: the URL pattern that matched (`api/v1/jobs/<uuid:job_id>`), never the path
# itself, so an id or a scanner's made-up URL makes no new series; a path no pattern matches
# is counted as `unmatched`, and a static file (whitenoise answers before any URL is resolved)
# as `static`.
UNMATCHED = "unmatched"
STATIC = "static"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "conveyor_http_requests_total",
    "HTTP requests answered, by method, route (the URL pattern, or `unmatched`) and status.",
    ("method", "route", "status"))
HTTP_DURATION = Histogram(
    "conveyor_http_request_duration_seconds",
    "Time from the request reaching Django to its response, by method and route.",
    ("method", "route"), buckets=HTTP_BUCKETS)


class RequestMetricsMiddleware:
    """Counts every request by route and status and times it (GET /metrics). Outermost, so
    the time includes every other middleware and the status is the one sent. Its cost is a
    clock read on each side and one in-memory update (bench: `python -m bench --only
    metrics`)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = perf_counter()
        response = self.get_response(request)
        elapsed = perf_counter() - started
        match = request.resolver_match
        if match is not None:
            route = match.route
        else:
            route = STATIC if request.path.startswith(settings.STATIC_URL) else UNMATCHED
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.inc(method, route, str(response.status_code))
        HTTP_DURATION.observe(elapsed, method, route)
        return response

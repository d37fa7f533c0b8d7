"""Every error answered under /api/ is the one JSON error shape, with DEBUG on and off: unknown
paths (any method, a trailing slash, /api itself), 405s, the schema and docs views' own
errors, bugs (500), and a database that does not answer (503 with Retry-After). Paths outside
/api/ keep what Django does with them, except the 400 for a Host header outside ALLOWED_HOSTS,
which is JSON on every path."""

from __future__ import annotations

import logging

import pytest
from django.test import Client

from tests.conftest import assert_error
from tests.database_utils import database_unreachable

pytestmark = pytest.mark.django_db

METHODS = ["get", "post", "put", "patch", "delete", "options"]
UNKNOWN_API_PATHS = [
    "/api/v1/nope",
    "/api/v1/events/",        # a real path plus a slash: no APPEND_SLASH redirect, no 500
    "/api/v1/jobs/not-a-uuid",
    "/api/v2/events",
    "/api/",
    "/api",
]


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings) -> bool:
    """Runs the test with DEBUG off (production) and on (`runstack`, config.settings.local)."""
    settings.DEBUG = request.param
    return request.param


def _anonymous() -> Client:
    # A bug must come back as the 500 a caller gets, not as an exception in the test.
    return Client(raise_request_exception=False)


# --- unknown paths --------------------------------------------------------------------------

@pytest.mark.parametrize("path", UNKNOWN_API_PATHS)
@pytest.mark.parametrize("method", METHODS)
def test_an_unknown_api_path_is_the_json_404_for_any_method(debug, method, path):
    # when an unknown path under /api/ is requested
    response = getattr(_anonymous(), method)(path)

    # then it is the JSON 404: not Django's (DEBUG) HTML page, not a slash redirect
    assert_error(response, 404, "not_found")
    assert "X-Correlation-ID" in response


@pytest.mark.parametrize("path", UNKNOWN_API_PATHS)
def test_head_of_an_unknown_api_path_is_a_json_404(debug, path):
    # when an unknown path under /api/ is asked for with HEAD
    response = _anonymous().head(path)

    # then it is a 404 declared as JSON (a HEAD answer carries no body)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


def test_an_unknown_api_path_with_a_key_is_the_json_404(debug, client_all):
    # when a caller with a key posts to a trailing-slash variant of a real endpoint
    response = client_all.post("/api/v1/events/", {"type": "demo.ping"}, format="json")

    # then it is the JSON 404 (and nothing was published)
    assert_error(response, 404, "not_found")


# --- wrong methods --------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "allow"), [
    ("delete", "/api/v1/events", "POST, OPTIONS"),
    ("put", "/api/v1/events/batch", "POST, OPTIONS"),
    ("post", "/api/v1/products", "GET, HEAD, OPTIONS"),
])
def test_a_wrong_method_on_an_endpoint_is_a_json_405_with_allow(debug, make_client, method,
                                                                path, allow):
    # given a key holding every scope
    client = make_client()

    # when a method the endpoint does not support is used
    response = getattr(client, method)(path)

    # then it is DRF's 405 in the JSON shape, and Allow names the methods that work
    error = assert_error(response, 405, "method_not_allowed")
    assert method.upper() in error["message"]
    assert response["Allow"] == allow


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/api/docs"),      # rendered by an HTML template renderer
    ("delete", "/api/docs"),
    ("post", "/api/schema"),    # rendered by the OpenAPI YAML renderer
    ("put", "/api/schema"),
])
def test_a_wrong_method_on_the_schema_or_docs_is_a_json_405_with_allow(debug, method, path):
    # when the schema or the docs page is called with a method they do not answer
    response = getattr(_anonymous(), method)(path)

    # then it is the JSON 405, not HTML or YAML, still naming the allowed methods
    error = assert_error(response, 405, "method_not_allowed")
    assert method.upper() in error["message"]
    assert response["Allow"] == "GET, HEAD, OPTIONS"


def test_an_unknown_schema_format_is_the_json_404(debug):
    # when the schema is asked for in a format it does not have
    response = _anonymous().get("/api/schema", {"format": "xml"})

    # then it is the JSON 404 (DRF's error was rendered as YAML before)
    assert_error(response, 404, "not_found")


def test_throttled_keeps_retry_after(debug, client_all, settings):
    # given a read rate of one request a minute
    settings.API_THROTTLE_RATES = {"publish": "1/m", "read": "1/m", "write": "1/m"}
    assert client_all.get("/api/v1/event-types").status_code == 200

    # when the key reads again within the minute
    response = client_all.get("/api/v1/event-types")

    # then it is the JSON 429 and Retry-After says when to come back
    assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/v1/events"), ("post", "/api/v1/events"), ("get", "/api/docs"),
    ("get", "/admin/"), ("post", "/admin/login/"), ("get", "/healthz"), ("get", "/readyz"),
    ("get", "/apiary"), ("get", "/"),
])
def test_a_host_not_allowed_is_the_json_400_on_every_path(debug, method, path):
    # when a request names a host the site does not serve, under /api/ or not (before: JSON
    # "bad_request" under /api/, Django's HTML 400 or its debug page everywhere else)
    response = getattr(Client(HTTP_HOST="not-ours.invalid"), method)(path)

    # then it is the JSON 400 disallowed_host
    assert_error(response, 400, "disallowed_host")
    assert "X-Correlation-ID" in response


# --- bugs -------------------------------------------------------------------------------------

@pytest.mark.urls("tests.domain.common.urls_with_failing_views")
@pytest.mark.parametrize("path", ["/api/v1/failing/django", "/api/v1/failing/drf"])
def test_a_bug_is_the_json_500_and_its_traceback_is_logged(debug, path, caplog):
    # when a view under /api/ raises an error nothing handles
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = _anonymous().get(path)

    # then the caller gets the JSON 500, not Django's debug page
    error = assert_error(response, 500, "internal_error")
    assert "a bug in" not in error["message"]  # nothing of the bug leaks
    assert "X-Correlation-ID" in response

    # and the traceback still reaches the logs
    records = [r for r in caplog.records if r.name == "django.request" and r.exc_info]
    assert records, caplog.text
    assert records[-1].exc_info[0].__name__ == "Bug"


# --- a database that does not answer ---------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/api/v1/events", {"type": "demo.ping", "payload": {}}),
    ("get", "/api/v1/jobs", None),
    ("post", "/api/v1/jobs", {"kind": "cache_invalidation", "params": {"keys": ["a"]}}),
], ids=["publish", "list-jobs", "trigger-job"])
def test_a_database_that_does_not_answer_is_503_with_retry_after(debug, client_all, method,
                                                                 path, body, caplog):
    # given a key, and then the database gone (connection refused)
    with database_unreachable(), caplog.at_level(logging.WARNING):
        # when the key calls the API (whose first query, the key lookup, fails)
        response = getattr(client_all, method)(path, body, format="json")

    # then it is the JSON 503 with Retry-After, not a 500: the client may retry
    error = assert_error(response, 503, "service_unavailable")
    assert error["details"] == {"unavailable": "database"}
    assert int(response["Retry-After"]) == 5
    assert "X-Correlation-ID" in response
    # and the log says why, in one line without a traceback
    lines = [r for r in caplog.records if r.name == "domain.common.errors"]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert "OperationalError" in lines[0].getMessage()

    # and once the database answers again the same request succeeds
    again = getattr(client_all, method)(path, body, format="json")
    assert again.status_code in (200, 202), again.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls("tests.domain.common.urls_with_failing_views")
def test_a_database_that_does_not_answer_outside_drf_is_the_json_503(debug):
    # given the database gone
    with database_unreachable():
        # when a plain Django view under /api/ queries it
        response = _anonymous().get("/api/v1/counting/django")

    # then it is the JSON 503 with Retry-After, with DEBUG on too (no debug page, no 500)
    assert_error(response, 503, "service_unavailable")
    assert int(response["Retry-After"]) == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls("tests.domain.common.urls_with_failing_views")
def test_a_database_that_does_not_answer_outside_the_api_is_a_503_without_debug(settings):
    # given production's DEBUG off and the database gone
    settings.DEBUG = False
    with database_unreachable():
        # when a view outside /api/ (an admin page, say) queries it
        response = _anonymous().get("/counting/django")

    # then handler500 answers the 503 too, not a 500
    assert_error(response, 503, "service_unavailable")
    assert int(response["Retry-After"]) == 5


# --- outside /api/ nothing changes ----------------------------------------------------------

def test_paths_outside_the_api_keep_what_django_does(debug):
    client = _anonymous()

    # when an unknown path outside /api/ is requested
    unknown = client.get("/apiary")
    # then DEBUG shows Django's HTML page; without DEBUG handler404 answers (JSON, as before)
    if debug:
        assert unknown.status_code == 404
        assert unknown["Content-Type"].startswith("text/html")
    else:
        assert_error(unknown, 404, "not_found")

    # when a probe is posted to, it is Django's own empty 405
    probe = client.post("/healthz")
    assert probe.status_code == 405
    assert probe["Allow"] == "GET"
    assert not probe["Content-Type"].startswith("application/json")

    # when the admin is asked for without its slash, APPEND_SLASH still redirects
    admin = client.get("/admin")
    assert admin.status_code == 301
    assert admin["Location"] == "/admin/"

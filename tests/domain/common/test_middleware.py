"""The request metrics: every request counted and timed by its route (the URL pattern, never
the path: ids and made-up URLs make no new series) and its status."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from tests.metrics_utils import fresh_metrics, label_values, scrape, value

pytestmark = pytest.mark.django_db

JOB_DETAIL = "api/v1/jobs/<uuid:job_id>"


_fresh = pytest.fixture(autouse=True)(fresh_metrics)


def test_requests_are_counted_by_route_and_status_not_by_path(client_all):
    # given three different job ids asked for (none exists: 404) and a listing (200)
    for _ in range(3):
        assert client_all.get(f"/api/v1/jobs/{uuid.uuid4()}").status_code == 404
    assert client_all.get("/api/v1/jobs").status_code == 200

    # when scraped
    samples = scrape()

    # then the three are one series under their route, with their status
    assert value(samples, "conveyor_http_requests_total", method="GET", route=JOB_DETAIL,
                 status="404") == 3
    assert value(samples, "conveyor_http_requests_total", method="GET", route="api/v1/jobs",
                 status="200") == 1
    # and each was timed
    assert value(samples, "conveyor_http_request_duration_seconds_count", method="GET",
                 route=JOB_DETAIL) == 3
    assert value(samples, "conveyor_http_request_duration_seconds_sum", method="GET",
                 route=JOB_DETAIL) > 0


def test_unknown_paths_make_no_new_label_values():
    # given a scanner trying made-up paths, inside and outside /api
    client = Client()
    paths = [f"/wp-login-{n}.php" for n in range(20)] + [f"/api/v1/nope/{uuid.uuid4()}"
                                                         for _ in range(20)]
    for path in paths:
        assert client.get(path).status_code == 404

    # when scraped
    samples = scrape()

    # then they are two series: unmatched, and the API's own not-found route
    routes = label_values(samples, "conveyor_http_requests_total", "route")
    assert routes == {"unmatched", "^api(?:/|$)"}  # (a scrape counts itself after it)
    assert value(samples, "conveyor_http_requests_total", method="GET", route="unmatched",
                 status="404") == 20
    assert value(samples, "conveyor_http_requests_total", method="GET", route="^api(?:/|$)",
                 status="404") == 20
    assert not any(path.strip("/") in "".join(route for route in routes) for path in paths)


def test_an_unknown_method_is_counted_as_other():
    Client().generic("BREW", "/healthz")

    samples = scrape()

    assert label_values(samples, "conveyor_http_requests_total", "method") == {"other"}
    assert value(samples, "conveyor_http_requests_total", method="other", route="healthz",
                 status="405") == 1


def test_the_scrape_counts_itself_under_its_route():
    scrape()
    samples = scrape()

    assert value(samples, "conveyor_http_requests_total", method="GET", route="metrics",
                 status="200") == 1  # the first one; the second is counted after it answers


def test_static_files_are_one_route_of_their_own(settings):
    # given the admin's stylesheet served by whitenoise (no URL pattern is resolved for it)
    settings.WHITENOISE_USE_FINDERS = True
    client = Client()  # (a new client: whitenoise reads the setting when the chain is built)
    assert client.get("/static/admin/css/base.css").status_code == 200
    assert client.get("/static/admin/css/nope.css").status_code == 404

    samples = scrape()

    assert value(samples, "conveyor_http_requests_total", method="GET", route="static",
                 status="200") == 1
    assert value(samples, "conveyor_http_requests_total", method="GET", route="static",
                 status="404") == 1

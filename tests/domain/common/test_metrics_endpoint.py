"""GET /metrics: off until configured, then only for the scrape token or an allowed network
(the TCP peer, never a header), in Prometheus text or OpenMetrics as asked."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import assert_error
from tests.metrics_utils import TOKEN, parse, reset_metrics

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh():
    reset_metrics()
    yield
    reset_metrics()


def test_with_neither_token_nor_network_there_is_no_endpoint(settings):
    # given production's defaults: no token, no network
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []

    # when anyone asks, even from loopback, even with a token
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    # then it is the JSON 404 of any URL that does not exist
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}",
                                           f"Bearer {TOKEN}x", "Bearer "])
def test_without_the_token_a_scrape_is_refused(settings, authorization):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}

    response = Client().get("/metrics", **headers)

    error = assert_error(response, 403, "metrics_forbidden")
    assert "METRICS_ALLOWED_NETWORKS" in error["message"]
    assert TOKEN not in response.content.decode()


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_the_token_opens_it_in_prometheus_text(settings, scheme):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"{scheme} {TOKEN}")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    samples = parse(response.content.decode())
    assert ("conveyor_metrics_source_up", frozenset({("source", "counters")})) in samples


@pytest.mark.parametrize(("peer", "allowed"), [
    ("10.1.2.3", True), ("10.255.0.1", True), ("::ffff:10.1.2.3", True), ("fd00::5", True),
    ("11.0.0.1", False), ("192.168.0.1", False), ("fe80::1", False), ("", False),
    ("not-an-address", False),
])
def test_an_allowed_network_opens_it_by_the_peer_address(settings, peer, allowed):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "fd00::/8"]

    response = Client(REMOTE_ADDR=peer).get("/metrics")

    assert response.status_code == (200 if allowed else 403), response.content


def test_a_forwarded_for_header_is_never_believed(settings):
    # given a scraper outside the allowed network that claims, in headers, to be inside it
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]

    response = Client(REMOTE_ADDR="203.0.113.9").get(
        "/metrics", HTTP_X_FORWARDED_FOR="10.0.0.1", HTTP_X_REAL_IP="10.0.0.1")

    assert_error(response, 403, "metrics_forbidden")


def test_either_rule_is_enough_when_both_are_set(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]

    assert Client(REMOTE_ADDR="10.0.0.7").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="203.0.113.9").get(
        "/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 403


def test_openmetrics_is_served_to_whoever_asks_for_it(settings):
    settings.METRICS_TOKEN = TOKEN

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
                            HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


def test_only_get_is_served(settings):
    settings.METRICS_TOKEN = TOKEN

    response = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 405

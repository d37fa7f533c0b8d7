"""Rendering helpers: absolute URLs keep each request's own scheme and host, timestamps UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from django.test import RequestFactory, override_settings

from domain.common.rendering import absolute_url, iso


@override_settings(ALLOWED_HOSTS=["a.example", "b.example"])
def test_absolute_urls_follow_each_requests_host_and_scheme():
    factory = RequestFactory()
    first = factory.get("/", HTTP_HOST="a.example")
    second = factory.get("/", HTTP_HOST="b.example", secure=True)

    # the URL template is cached per host and scheme, so each request gets its own
    assert absolute_url(first, "event-detail", "1") == "http://a.example/api/v1/events/1"
    assert absolute_url(second, "event-detail", "2") == "https://b.example/api/v1/events/2"
    assert absolute_url(first, "job-detail", "3") == "http://a.example/api/v1/jobs/3"


def test_iso_writes_utc_with_z_whatever_the_offset_given():
    moment = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
    assert iso(moment) == "2026-11-28T12:00:00.123456Z"
    assert iso(moment.astimezone(timezone(timedelta(hours=2)))) == "2026-11-28T12:00:00.123456Z"
    assert iso(None) is None

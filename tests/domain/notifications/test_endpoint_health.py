"""Webhook endpoints by health, as the operator dashboard shows them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from domain.notifications.models import EndpointState, WebhookEndpoint
from domain.notifications.selectors import endpoints_by_health

pytestmark = pytest.mark.django_db


def _endpoint(name: str, **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(url=f"https://{name}.example.com/hook",
                                          secret="whsec_x", **fields)


def test_each_endpoint_counts_once_under_its_health():
    now = timezone.now()
    _endpoint("ok")
    _endpoint("ok2", last_success_at=now)
    failing = _endpoint("failing", consecutive_failures=2,
                        failing_since=now - dt.timedelta(minutes=5))
    tripped = _endpoint("open", consecutive_failures=9, failing_since=now - dt.timedelta(hours=1),
                        circuit_open_until=now + dt.timedelta(seconds=30))
    _endpoint("half-open", circuit_open_until=now - dt.timedelta(seconds=1))  # cool-down over
    degraded = _endpoint("degraded", state=EndpointState.DEGRADED,
                         failing_since=now - dt.timedelta(days=2))
    disabled = _endpoint("disabled", state=EndpointState.DISABLED, disabled_reason="410 Gone",
                         circuit_open_until=now + dt.timedelta(minutes=5))

    counts, unhealthy = endpoints_by_health(now=now)

    assert counts == {"healthy": 3, "failing": 1, "circuit_open": 1, "degraded": 1,
                      "disabled": 1}
    # the unhealthy ones, failing longest first (a disabled one without a failure last)
    assert [(e.pk, e.health) for e in unhealthy] == [
        (degraded.pk, "degraded"), (tripped.pk, "circuit_open"), (failing.pk, "failing"),
        (disabled.pk, "disabled")]


def test_the_list_is_bounded():
    now = timezone.now()
    for i in range(5):
        _endpoint(f"bad{i}", consecutive_failures=1, failing_since=now)
    counts, unhealthy = endpoints_by_health(now=now, limit=3)
    assert counts["failing"] == 5
    assert len(unhealthy) == 3

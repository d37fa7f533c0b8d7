"""The notifications' metrics: every delivery attempt by channel and outcome, counted once its
record commits, and the webhook endpoints' health when scraped (README "Metrics")."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from functools import partial

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from domain.common.gauges import Gauge, GaugeSet, GaugeValues
from domain.common.metrics import Counter
from domain.notifications.models import (
    AttemptResult,
    Channel,
    DeliveryAttempt,
    EndpointState,
    WebhookEndpoint,
)

DELIVERY_ATTEMPTS = Counter(
    "conveyor_delivery_attempts_total",
    "Delivery attempts recorded, by channel (webhook, email, in_app) and outcome: delivered, "
    "failed (another attempt follows) or gave_up.",
    ("channel", "outcome"),
    initial=lambda: [(c.value, o.value) for c in Channel for o in AttemptResult])


def count_attempts_on_commit(channel: str, attempts: Iterable[DeliveryAttempt]) -> None:
    """Count the attempts once their rows commit (now, outside a transaction)."""
    outcomes = Tally(str(attempt.outcome) for attempt in attempts)
    if outcomes:
        transaction.on_commit(partial(_count, str(channel), outcomes))


def _count(channel: str, outcomes: Tally) -> None:
    for outcome, n in outcomes.items():
        DELIVERY_ATTEMPTS.inc(channel, outcome, amount=n)


def endpoints_now() -> GaugeValues:
    """One GROUP BY over the endpoints table: one row per registered endpoint (tens or
    thousands, never the deliveries' millions), so it is read whole."""
    now = timezone.now()
    by_state = dict(WebhookEndpoint.objects.values_list("state").annotate(n=Count("pk"))
                    .order_by())
    circuit_open = WebhookEndpoint.objects.filter(circuit_open_until__gt=now).count()
    return {"conveyor_webhook_endpoints": [[state.value, by_state.get(state.value, 0)]
                                           for state in EndpointState],
            "conveyor_webhook_endpoints_circuit_open": [[circuit_open]]}


ENDPOINTS_NOW = GaugeSet("webhook_endpoints", [
    Gauge("conveyor_webhook_endpoints", "Webhook endpoints now, by health state: active, "
          "degraded (failing; its owner was warned), disabled (deliveries parked).",
          ("state",)),
    Gauge("conveyor_webhook_endpoints_circuit_open", "Webhook endpoints whose circuit breaker "
          "is open now (their deliveries wait, using no attempts)."),
], endpoints_now, needs=("database",))

"""An endpoint's health: what each attempt's outcome does to it, the circuit breaker, and the
lifecycle active → degraded → disabled.

- Every failed attempt counts: `consecutive_failures`, `failing_since` (the first failure of
  the streak). A delivered attempt ends the streak, closes the circuit and makes a degraded
  endpoint active again.
- **Circuit breaker**: WEBHOOK_CIRCUIT_FAILURES failures in a row open the circuit for a
  cool-down (WEBHOOK_CIRCUIT_COOLDOWN_SECONDS, doubled by each failed probe up to
  WEBHOOK_CIRCUIT_COOLDOWN_MAX_SECONDS). While it is open, the endpoint's deliveries wait,
  `parked`, without using attempts. Then one delivery goes through as the half-open probe;
  its success closes the circuit, its failure opens it again.
- **Degraded**: failing for WEBHOOK_DEGRADE_AFTER_SECONDS and at least
  WEBHOOK_DEGRADE_MIN_FAILURES attempts. Deliveries go on; `webhook_endpoint.degraded` is
  published so the owner can act before anything is disabled.
- **Disabled**: failing for WEBHOOK_DISABLE_AFTER_SECONDS and at least
  WEBHOOK_DISABLE_MIN_FAILURES attempts, or a 410 Gone. Its open deliveries are parked (not
  failed: no attempt is used), new events' deliveries are parked too, and
  `webhook_endpoint.disabled` is published. Enabling it again resumes the parked deliveries,
  oldest first (services.endpoint_update).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from domain.common.rendering import span
from domain.events.services import event_publish
from domain.jobs.models import Job, JobStatus
from domain.jobs.services import jobs_cancel_selected
from domain.notifications.event_types import (
    WEBHOOK_ENDPOINT_DEGRADED,
    WEBHOOK_ENDPOINT_DISABLED,
)
from domain.notifications.models import (
    Delivery,
    DeliveryStatus,
    EndpointState,
    WebhookEndpoint,
)

logger = logging.getLogger(__name__)


@dataclass
class Tally:
    """One endpoint's outcomes in a batch of sends."""

    delivered: int = 0
    failed: int = 0
    gone: bool = False
    probe: bool = False


# --- The circuit breaker, asked before a send -------------------------------------------------

def probe_budget() -> timedelta:
    """How long a half-open probe may take before another delivery may probe instead."""
    return timedelta(seconds=settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_READ_TIMEOUT
                     + settings.WEBHOOK_CONNECT_RETRY_SECONDS + 5)


def circuit_wait(endpoint: WebhookEndpoint, now: datetime) -> float | None:
    """None: the circuit lets a send through now (closed, or this caller holds the half-open
    probe). Otherwise the seconds to wait. Taking the probe is one conditional UPDATE, so
    of all the workers only one probes at a time."""
    if endpoint.circuit_open_until is None:
        return None
    if endpoint.circuit_open_until > now:
        return (endpoint.circuit_open_until - now).total_seconds()
    took = WebhookEndpoint.objects.filter(
        Q(circuit_probe_at__isnull=True) | Q(circuit_probe_at__lt=now - probe_budget()),
        pk=endpoint.pk, circuit_open_until__lte=now).update(circuit_probe_at=now)
    if took:
        endpoint.circuit_probe_at = now
        return None
    # Another delivery is probing: ask again a little later.
    return float(min(endpoint.circuit_cooldown or settings.WEBHOOK_CIRCUIT_COOLDOWN_SECONDS, 5))


# --- Outcomes, after a send ------------------------------------------------------------------

def endpoints_record(tallies: dict, now: datetime) -> None:
    """Move each endpoint's health by its outcomes in a batch."""
    healthy = []
    for endpoint_id, tally in tallies.items():
        if tally.gone:
            endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
            if endpoint is not None:
                endpoint_disable(endpoint=endpoint, reason="the receiver answered 410 Gone")
            continue
        if tally.delivered:
            healthy.append(endpoint_id)
        elif tally.failed:
            _failing(endpoint_id, tally, now)
    if healthy:
        _healthy(healthy, now)


def _healthy(endpoint_ids: list, now: datetime) -> None:
    # One statement for every endpoint of the batch that delivered (it was one per endpoint:
    # with 10 endpoints, building ten UPDATEs was 16% of a batch's CPU, py-spy, bench
    # webhooks), and it changes no row in the usual case (healthy already, seen recently).
    WebhookEndpoint.objects.filter(
        Q(consecutive_failures__gt=0) | Q(state=EndpointState.DEGRADED)
        | Q(circuit_open_until__isnull=False) | Q(last_success_at__isnull=True)
        | Q(last_success_at__lt=now - timedelta(seconds=60)),
        pk__in=endpoint_ids).update(
        consecutive_failures=0, failing_since=None, last_success_at=now,
        circuit_open_until=None, circuit_probe_at=None, circuit_cooldown=0,
        state=_active_unless_disabled())


def _active_unless_disabled() -> Case:
    return Case(When(state=EndpointState.DISABLED, then=Value(EndpointState.DISABLED)),
                default=Value(EndpointState.ACTIVE))


def _failing(endpoint_id, tally: Tally, now: datetime) -> None:
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id).first()
        if endpoint is None:
            return
        endpoint.consecutive_failures += tally.failed
        endpoint.failing_since = endpoint.failing_since or now
        endpoint.last_failure_at = now
        fields = ["consecutive_failures", "failing_since", "last_failure_at"]
        if endpoint.consecutive_failures >= settings.WEBHOOK_CIRCUIT_FAILURES and (
                endpoint.circuit_open_until is None or endpoint.circuit_open_until <= now):
            probed = endpoint.circuit_probe_at is not None
            cooldown = (min(max(endpoint.circuit_cooldown * 2,
                                settings.WEBHOOK_CIRCUIT_COOLDOWN_SECONDS),
                            settings.WEBHOOK_CIRCUIT_COOLDOWN_MAX_SECONDS)
                        if probed else settings.WEBHOOK_CIRCUIT_COOLDOWN_SECONDS)
            endpoint.circuit_cooldown = cooldown
            endpoint.circuit_open_until = now + timedelta(seconds=cooldown)
            endpoint.circuit_probe_at = None
            fields += ["circuit_cooldown", "circuit_open_until", "circuit_probe_at"]
            logger.warning("webhook circuit open endpoint=%s failures=%d cooldown=%ss",
                           endpoint.pk, endpoint.consecutive_failures, cooldown)
        endpoint.save(update_fields=fields)
    failing_for = (now - endpoint.failing_since).total_seconds()
    if (endpoint.state != EndpointState.DISABLED
            and failing_for >= settings.WEBHOOK_DISABLE_AFTER_SECONDS
            and endpoint.consecutive_failures >= settings.WEBHOOK_DISABLE_MIN_FAILURES):
        endpoint_disable(endpoint=endpoint, reason=(
            f"every attempt failed for {span(failing_for)} "
            f"({endpoint.consecutive_failures} in a row)"))
    elif (endpoint.state == EndpointState.ACTIVE
          and failing_for >= settings.WEBHOOK_DEGRADE_AFTER_SECONDS
          and endpoint.consecutive_failures >= settings.WEBHOOK_DEGRADE_MIN_FAILURES):
        _degrade(endpoint, failing_for)



def _degrade(endpoint: WebhookEndpoint, failing_for: float) -> None:
    moved = WebhookEndpoint.objects.filter(pk=endpoint.pk, state=EndpointState.ACTIVE).update(
        state=EndpointState.DEGRADED, updated_at=timezone.now())
    if not moved:
        return  # another worker moved it first, and published
    endpoint.state = EndpointState.DEGRADED
    reason = (f"every attempt failed for {span(failing_for)} "
              f"({endpoint.consecutive_failures} in a row)")
    logger.warning("webhook endpoint degraded endpoint=%s %s", endpoint.pk, reason)
    _announce(endpoint, WEBHOOK_ENDPOINT_DEGRADED.name, reason)


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str, by_owner: bool = False) -> bool:
    """Disable the endpoint (unless it is already) and park its open deliveries; publish
    `webhook_endpoint.disabled` unless its owner did it. Answers whether it changed."""
    now = timezone.now()
    with transaction.atomic():
        moved = WebhookEndpoint.objects.filter(pk=endpoint.pk).exclude(
            state=EndpointState.DISABLED).update(
            state=EndpointState.DISABLED, enabled=False, disabled_reason=reason[:500],
            updated_at=now)
        if not moved:
            return False
        parked = deliveries_park(endpoint_id=endpoint.pk)
    endpoint.state, endpoint.enabled, endpoint.disabled_reason = (
        EndpointState.DISABLED, False, reason[:500])
    logger.warning("webhook endpoint disabled endpoint=%s parked=%d reason=%s", endpoint.pk,
                   parked, reason)
    if not by_owner:
        _announce(endpoint, WEBHOOK_ENDPOINT_DISABLED.name, reason)
    return True


def deliveries_park(*, endpoint_id) -> int:
    """Park the endpoint's deliveries that wait for a send (their jobs are cancelled; one
    being sent right now finishes its attempt). Answers how many."""
    waiting = Delivery.objects.filter(
        endpoint_id=endpoint_id, status__in=(DeliveryStatus.PENDING, DeliveryStatus.RETRYING))
    job_ids = list(waiting.exclude(job_id=None).values_list("job_id", flat=True))
    parked = waiting.update(status=DeliveryStatus.PARKED, next_attempt_at=None)
    if job_ids:
        jobs_cancel_selected(ids=Job.objects.filter(
            pk__in=job_ids, status__in=(JobStatus.QUEUED, JobStatus.RETRYING)).values("pk"))
    return parked


def _announce(endpoint: WebhookEndpoint, event_type: str, reason: str) -> None:
    """Publish the operational event under the owner's key (they see it with their events,
    and endpoints subscribed to it get it). A failure to publish must not undo the change."""
    try:
        event_publish(
            event_type=event_type, by_server=True, api_key=endpoint.api_key,
            payload={"endpoint_id": str(endpoint.pk), "url": endpoint.url,
                     "state": endpoint.state,
                     "failing_since": (endpoint.failing_since.isoformat()
                                       if endpoint.failing_since else None),
                     "consecutive_failures": endpoint.consecutive_failures,
                     "reason": reason})
    except Exception:
        logger.exception("could not publish %s for endpoint %s", event_type, endpoint.pk)


__all__ = ["Tally", "circuit_wait", "deliveries_park", "endpoint_disable",
           "endpoints_record"]

"""customers.deactivate_inactive: customers whose last activity (or, never active, their
sign-up) is older than N days become inactive; the cutoff is fixed when the run is made."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from domain.bulk.models import BulkRunStatus
from domain.customers.models import Customer
from domain.events.models import Event
from tests.bulk_utils import make_customers, run_to_end, start

pytestmark = pytest.mark.django_db

DEACTIVATE = "customers.deactivate_inactive"


def _active(customers: list[Customer]) -> list[bool]:
    by_id = dict(Customer.objects.filter(pk__in=[c.pk for c in customers])
                 .values_list("pk", "is_active"))
    return [by_id[c.pk] for c in customers]


def test_customers_inactive_for_longer_than_the_days_are_deactivated():
    # given customers active 31 and 29 days ago, never active but signed up 31 and 29 days
    # ago, and one already inactive for a year
    now = timezone.now()
    days_ago = lambda n: now - timedelta(days=n)  # noqa: E731
    [seen_long_ago] = make_customers(1, last_active_at=days_ago(31), created_at=days_ago(400))
    [seen_lately] = make_customers(1, last_active_at=days_ago(29), created_at=days_ago(400))
    [never_old] = make_customers(1, last_active_at=None, created_at=days_ago(31))
    [never_new] = make_customers(1, last_active_at=None, created_at=days_ago(29))
    [already] = make_customers(1, is_active=False, last_active_at=days_ago(365),
                               created_at=days_ago(400), updated_at=days_ago(300))
    everyone = [seen_long_ago, seen_lately, never_old, never_new, already]

    # when those inactive for 30 days are deactivated, in chunks of one
    run = run_to_end(start(DEACTIVATE, {"days": 30}, chunk_size=1))

    # then the two whose last activity (or sign-up) is older than 30 days are inactive
    assert _active(everyone) == [False, True, False, True, False]
    # and the one already inactive was not visited, nor written
    assert (run.status, run.rows_matched, run.rows_done, run.rows_changed) == (
        BulkRunStatus.SUCCEEDED, 2, 2, 2)
    assert Customer.objects.get(pk=already.pk).updated_at == days_ago(300)
    # and the event says who was deactivated: those seen before the run's cutoff
    [event] = Event.objects.filter(type="customers.deactivated")
    cutoff = parse_datetime(event.payload["cutoff"])
    assert event.payload == {"run_id": str(run.pk), "cutoff": run.plan["cutoff"], "days": 30,
                             "rows_changed": 2}
    assert days_ago(30) <= cutoff <= timezone.now() - timedelta(days=30)
    assert event.jobs.count() == 0  # (no handler of its own: webhooks subscribe to it)


def test_the_cutoff_is_fixed_when_the_run_is_made():
    # given two customers last seen 40 days ago, and a run made for 30 days
    now = timezone.now()
    customers = make_customers(2, last_active_at=now - timedelta(days=40))
    run = start(DEACTIVATE, {"days": 30})

    # when one of them comes back before the run's chunk reaches them
    Customer.objects.filter(pk=customers[1].pk).update(last_active_at=timezone.now())
    run = run_to_end(run)

    # then the one who came back keeps an active account
    assert _active(customers) == [False, True]
    assert run.rows_changed == 1


def test_a_dry_run_counts_the_customers_and_deactivates_none():
    customers = make_customers(3, last_active_at=timezone.now() - timedelta(days=400))
    run = run_to_end(start(DEACTIVATE, {"days": 365}, dry_run=True))
    assert (run.rows_changed, run.result) == (3, {"would_change": 3})
    assert _active(customers) == [True] * 3
    assert not Event.objects.exists()

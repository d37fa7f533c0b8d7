"""Customers: the table, its admin, and the index the nightly deactivation of inactive
customers (issue 14, `customers.deactivate_inactive`) will read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from domain.customers.models import Customer
from tests.conftest import assert_changelist_loads
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_a_customer_needs_no_email_and_is_active_by_default():
    # when a customer is created with a name only
    customer = Customer.objects.create(name="Alan Turing")

    # then it is active, has never been seen, and has no address
    customer.refresh_from_db()
    assert (customer.email, customer.is_active, customer.last_active_at) == ("", True, None)
    assert str(customer) == "Alan Turing"


def test_the_customer_list_loads_with_a_search(operator):
    CustomerFactory()
    assert_changelist_loads(operator, "customers/customer")


@pytest.mark.postgres
def test_the_stale_active_customers_are_found_through_the_partial_index():
    # given 20,000 customers: most active recently, some inactive long ago, and 100 active
    # customers not seen for a year (what a nightly deactivation looks for)
    now = timezone.now()
    rows = [Customer(name=f"c{i}", email=f"c{i}@example.com", last_active_at=now - timedelta(
        days=i % 30)) for i in range(18_000)]
    rows += [Customer(name=f"i{i}", is_active=False, last_active_at=now - timedelta(days=400))
             for i in range(1_900)]
    rows += [Customer(name=f"s{i}", last_active_at=now - timedelta(days=365)) for i in range(100)]
    Customer.objects.bulk_create(rows, batch_size=5_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE customers_customer")

    # when the planner is asked how it finds the active customers idle for 90 days
    stale = Customer.objects.filter(is_active=True, last_active_at__lt=now - timedelta(days=90))
    plan = stale.explain()

    # then it reads the partial index (only active customers are in it), not the table
    assert "customer_active_last_seen" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert stale.count() == 100

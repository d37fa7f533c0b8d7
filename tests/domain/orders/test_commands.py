"""Management command: seed_orders (demo customers and placed orders to ship)."""

from __future__ import annotations

import pytest

from domain.customers.models import Customer
from domain.orders.models import Order, OrderStatus
from domain.orders.services import DEMO_CUSTOMERS, DEMO_ORDERS
from tests.conftest import run_command

pytestmark = pytest.mark.django_db


def test_seed_orders_is_idempotent_and_prints_the_ship_urls():
    # when the demo orders are seeded twice
    first, _ = run_command("seed_orders")
    ids = dict(Order.objects.values_list("number", "pk"))
    second, _ = run_command("seed_orders")

    # then the customers and orders are created once, each run says how many it made
    assert first.splitlines()[:2] == [
        f"demo customers: {len(DEMO_CUSTOMERS)} created, {len(DEMO_CUSTOMERS)} total",
        f"demo orders: {len(DEMO_ORDERS)} created, {len(DEMO_ORDERS)} total"]
    assert second.splitlines()[:2] == [
        f"demo customers: 0 created, {len(DEMO_CUSTOMERS)} total",
        f"demo orders: 0 created, {len(DEMO_ORDERS)} total"]
    assert Customer.objects.count() == len(DEMO_CUSTOMERS)
    assert dict(Order.objects.values_list("number", "pk")) == ids
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.PLACED}

    # and each placed order's ship URL is printed
    assert f"  ORD-1001 placed: /api/v1/orders/{ids['ORD-1001']}/ship" in second.splitlines()
    # the customer without an address exists once, with their order
    assert Order.objects.get(number="ORD-1004").customer.email == ""

"""The orders admin: listed and searched; a shipment is set only by the ship service (which
publishes order.shipped), never by editing the row."""

import pytest
from django.urls import reverse

from domain.events.models import Event
from domain.orders.models import Order, OrderStatus
from tests.conftest import assert_changelist_loads
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db


def test_the_order_list_loads_with_a_search(operator):
    OrderFactory()
    assert_changelist_loads(operator, "orders/order")


def test_an_admin_edit_cannot_mark_an_order_shipped(operator):
    # given a placed order
    order = OrderFactory(total="10.00")

    # when an operator posts its change form with a shipment in it
    url = reverse("admin:orders_order_change", args=[order.pk])
    response = operator.post(url, {
        "customer": order.customer_id, "total": "12.00", "currency": "EUR",
        "status": "shipped", "carrier": "DHL", "tracking_number": "X1"})

    # then the total changed, the shipment fields did not, and nothing was published
    assert response.status_code == 302, response.content.decode()[:2000]
    row = Order.objects.get(pk=order.pk)
    assert str(row.total) == "12.00"
    assert (row.status, row.carrier, row.tracking_number) == (OrderStatus.PLACED, "", "")
    assert not Event.objects.exists()

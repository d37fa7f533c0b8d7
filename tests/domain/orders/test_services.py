"""order_ship: a placed order becomes shipped and `order.shipped` is published in the same
transaction; anything else is refused, and the same shipment again is answered once."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from domain.access.services import api_key_create
from domain.common.errors import Conflict, NotFound, ValidationFailed
from domain.events.models import Event
from domain.jobs.models import Job
from domain.orders.models import Order, OrderStatus
from domain.orders.services import order_ship
from tests.conftest import simultaneously
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db

SHIPMENT = {"carrier": "DHL", "tracking_number": "JD0146000062",
            "tracking_url": "https://www.dhl.com/track?id=JD0146000062"}


def test_a_placed_order_ships_and_publishes_order_shipped():
    # given a placed order and an API key
    order = OrderFactory(number="ORD-1001")
    key, _ = api_key_create(name="shop", scopes=["orders:write"])

    # when it is shipped
    shipped = order_ship(order=order.pk, **SHIPMENT, api_key=key, correlation_id="corr-1")

    # then the row says shipped, with the carrier, tracking and when
    row = Order.objects.get(pk=order.pk)
    assert row.status == OrderStatus.SHIPPED == shipped.status
    assert (row.carrier, row.tracking_number, row.tracking_url) == tuple(SHIPMENT.values())
    assert row.shipped_at is not None and row.updated_at == row.shipped_at

    # and one order.shipped event carries the shipment, under the caller's key, with one
    # event_notification job for the customer notifier
    event = Event.objects.get()
    assert event.type == "order.shipped"
    assert event.payload == {
        "order_id": str(order.pk), "order_number": "ORD-1001",
        "customer_id": str(order.customer_id), **SHIPMENT,
        "shipped_at": row.shipped_at.isoformat()}
    assert event.occurred_at == row.shipped_at
    assert (event.api_key_id, event.correlation_id) == (key.pk, "corr-1")
    [job] = Job.objects.filter(event_id=event.pk)
    assert (job.kind, job.params) == ("event_notification",
                                      {"notifier": "orders.customer_shipped"})


def test_an_order_without_a_tracking_url_leaves_it_out_of_the_event():
    # given a placed order, passed as the row itself
    order = OrderFactory()

    # when it is shipped without a link
    order_ship(order=order, carrier="UPS", tracking_number="1Z999")

    # then the payload has no tracking_url (its schema says: a non-empty string, or absent)
    assert "tracking_url" not in Event.objects.get().payload
    assert Order.objects.get(pk=order.pk).tracking_url == ""


def test_the_same_shipment_again_answers_the_order_without_a_second_event():
    # given a shipped order
    order = OrderFactory()
    first = order_ship(order=order.pk, **SHIPMENT)

    # when the same shipment is sent again (a client retrying after a lost answer)
    again = order_ship(order=order.pk, **SHIPMENT)

    # then it answers the order as it is, and nothing more was published
    assert again.pk == first.pk and again.status == OrderStatus.SHIPPED
    assert again.shipped_at == first.shipped_at
    assert Event.objects.count() == 1
    assert Job.objects.count() == 1


@pytest.mark.parametrize("change", [
    {"tracking_number": "OTHER-1"}, {"carrier": "UPS"}, {"tracking_url": ""},
])
def test_another_shipment_of_a_shipped_order_is_409(change):
    # given a shipped order
    order = OrderFactory()
    order_ship(order=order.pk, **SHIPMENT)

    # when it is shipped again with other details
    with pytest.raises(Conflict) as refused:
        order_ship(order=order.pk, **{**SHIPMENT, **change})

    # then it is refused, naming what it is and what it was shipped with; the row keeps the
    # first shipment and there is still one event
    assert refused.value.code == "order_not_shippable"
    assert refused.value.details == {"order": str(order.pk), "status": "shipped",
                                     "carrier": "DHL", "tracking_number": "JD0146000062"}
    assert Order.objects.get(pk=order.pk).tracking_number == "JD0146000062"
    assert Event.objects.count() == 1


@pytest.mark.parametrize("status", [OrderStatus.DELIVERED, OrderStatus.CANCELLED])
def test_an_order_that_is_not_placed_is_not_shippable(status):
    # given an order delivered or cancelled
    order = OrderFactory(status=status)

    # when it is shipped
    with pytest.raises(Conflict) as refused:
        order_ship(order=order.pk, **SHIPMENT)

    # then 409 with its status, and nothing changed or published
    assert refused.value.status_code == 409
    assert refused.value.details == {"order": str(order.pk), "status": status}
    assert Order.objects.get(pk=order.pk).status == status
    assert not Event.objects.exists()


def test_an_unknown_order_is_not_found():
    with pytest.raises(NotFound):
        order_ship(order=uuid.uuid4(), **SHIPMENT)
    assert not Event.objects.exists()


def test_a_refused_event_leaves_the_order_placed():
    # given a placed order
    order = OrderFactory()

    # when the ship is called with an empty carrier (the API refuses it first; here the event
    # schema does, after the order row was written in the same transaction)
    with pytest.raises(ValidationFailed) as refused:
        order_ship(order=order.pk, carrier="", tracking_number="X1")

    # then the transaction rolled back: the order is still placed and nothing was published
    assert refused.value.code == "invalid_payload"
    row = Order.objects.get(pk=order.pk)
    assert (row.status, row.carrier, row.shipped_at) == (OrderStatus.PLACED, "", None)
    assert not Event.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_ships_of_one_order_publish_once():
    # given a placed order
    order = OrderFactory()
    connection.close()

    # when eight clients ship it at once, each with its own tracking number
    numbers = iter(range(8))

    def ship():
        try:
            return order_ship(order=order.pk, carrier="DHL",
                              tracking_number=f"T{next(numbers)}").tracking_number
        except Conflict as exc:
            return exc.code

    answers = simultaneously(8, ship)

    # then the row lock lets one through; the others see it shipped and are refused
    winners = [a for a in answers if a != "order_not_shippable"]
    assert len(winners) == 1, answers
    assert Order.objects.get(pk=order.pk).tracking_number == winners[0]
    event = Event.objects.get(type="order.shipped")
    assert event.payload["tracking_number"] == winners[0]

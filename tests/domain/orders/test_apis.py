"""The orders API: GET /api/v1/orders/{id} and POST /api/v1/orders/{id}/ship."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from domain.events.models import Event
from domain.orders.models import Order, OrderStatus
from tests.conftest import assert_error
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db

SHIPMENT = {"carrier": "DHL", "tracking_number": "JD0146000062",
            "tracking_url": "https://www.dhl.com/track?id=JD0146000062"}


def ship_url(order_id) -> str:
    return reverse("order-ship", args=[order_id])


def detail_url(order_id) -> str:
    return reverse("order-detail", args=[order_id])


# --- GET /api/v1/orders/{id} ---------------------------------------------------------------

@pytest.mark.parametrize("scope", ["orders:read", "orders:write"])
def test_an_order_is_read_with_either_orders_scope(make_client, scope):
    # given a placed order
    order = OrderFactory(number="ORD-1001", total="49.80", currency="EUR")

    # when a key with one orders scope reads it
    response = make_client([scope]).get(detail_url(order.pk))

    # then it is the order as stored
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "id": str(order.pk), "number": "ORD-1001", "customer": str(order.customer_id),
        "status": "placed", "carrier": "", "tracking_number": "", "tracking_url": "",
        "shipped_at": None, "total": "49.80", "currency": "EUR",
        "created_at": body["created_at"], "updated_at": body["updated_at"]}


def test_an_unknown_order_is_404(make_client):
    assert_error(make_client(["orders:read"]).get(detail_url(uuid.uuid4())), 404, "not_found")


def test_reading_an_order_needs_an_orders_scope(make_client):
    order = OrderFactory()
    assert_error(make_client(["products:read"]).get(detail_url(order.pk)), 403,
                 "permission_denied")
    assert_error(Client().get(detail_url(order.pk)), 401, "not_authenticated")


# --- POST /api/v1/orders/{id}/ship ---------------------------------------------------------

def test_shipping_answers_the_shipped_order_and_publishes_once(make_client):
    # given a placed order and a key that may ship
    order = OrderFactory()
    client = make_client(["orders:write"])

    # when it is shipped
    response = client.post(ship_url(order.pk), SHIPMENT, format="json",
                           HTTP_X_CORRELATION_ID="ship-corr-1")

    # then 200 with the order, shipped, as GET reads it
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "shipped" and body["shipped_at"] is not None
    assert {k: body[k] for k in SHIPMENT} == SHIPMENT
    assert client.get(detail_url(order.pk)).json() == body

    # and one order.shipped event, under the key and the request's correlation id
    event = Event.objects.get()
    assert (event.type, event.api_key_id) == ("order.shipped", client.api_key.pk)
    assert event.correlation_id == "ship-corr-1"
    assert event.payload["tracking_number"] == SHIPMENT["tracking_number"]


def test_shipping_again_with_the_same_shipment_is_200_with_no_second_event(make_client):
    # given an order shipped through the API
    order = OrderFactory()
    client = make_client(["orders:write"])
    first = client.post(ship_url(order.pk), SHIPMENT, format="json")
    assert first.status_code == 200, first.content

    # when the same request is sent again
    again = client.post(ship_url(order.pk), SHIPMENT, format="json")

    # then the same answer, and still one event
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert Event.objects.count() == 1


def test_shipping_a_shipped_order_otherwise_is_409_with_its_status(make_client):
    # given an order shipped with one tracking number
    order = OrderFactory()
    client = make_client(["orders:write"])
    client.post(ship_url(order.pk), SHIPMENT, format="json")

    # when it is shipped with another
    response = client.post(ship_url(order.pk), {**SHIPMENT, "tracking_number": "OTHER"},
                           format="json")

    # then 409 order_not_shippable, saying it is shipped and with what
    error = assert_error(response, 409, "order_not_shippable")
    assert error["details"]["status"] == "shipped"
    assert error["details"]["tracking_number"] == SHIPMENT["tracking_number"]
    assert Event.objects.count() == 1


def test_shipping_a_cancelled_order_is_409(make_client):
    order = OrderFactory(status=OrderStatus.CANCELLED)
    response = make_client(["orders:write"]).post(ship_url(order.pk), SHIPMENT, format="json")
    error = assert_error(response, 409, "order_not_shippable")
    assert error["details"] == {"order": str(order.pk), "status": "cancelled"}
    assert not Event.objects.exists()


def test_shipping_an_unknown_order_is_404(make_client):
    response = make_client(["orders:write"]).post(ship_url(uuid.uuid4()), SHIPMENT,
                                                  format="json")
    assert_error(response, 404, "not_found")
    assert not Event.objects.exists()


@pytest.mark.parametrize("scopes", [["orders:read"], ["products:write", "events:publish"]])
def test_shipping_needs_orders_write(make_client, scopes):
    # given a placed order and a key without orders:write
    order = OrderFactory()

    # when it tries to ship it, then 403 and the order is still placed
    response = make_client(scopes).post(ship_url(order.pk), SHIPMENT, format="json")
    error = assert_error(response, 403, "permission_denied")
    assert "orders:write" in error["message"]
    assert Order.objects.get(pk=order.pk).status == OrderStatus.PLACED


def test_shipping_without_a_key_is_401():
    order = OrderFactory()
    response = Client().post(ship_url(order.pk), json.dumps(SHIPMENT),
                             content_type="application/json")
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize(("body", "field"), [
    ({"tracking_number": "X1"}, "carrier"),
    ({"carrier": "DHL"}, "tracking_number"),
    ({"carrier": 17, "tracking_number": "X1"}, "carrier"),  # a string only, not a number
    ({"carrier": "DHL", "tracking_number": ["X1"]}, "tracking_number"),
    ({"carrier": "", "tracking_number": "X1"}, "carrier"),
    ({"carrier": "   ", "tracking_number": "X1"}, "carrier"),
    ({"carrier": "D" * 65, "tracking_number": "X1"}, "carrier"),
    ({"carrier": "DHL", "tracking_number": "9" * 101}, "tracking_number"),
    ({**SHIPMENT, "tracking_url": "ftp://example.com/x"}, "tracking_url"),
    ({**SHIPMENT, "tracking_url": "https://example.com/a b"}, "tracking_url"),
    # Python's `$` matched before a final newline, which the schema's pattern refuses
    ({**SHIPMENT, "tracking_url": "https://example.com/x\n"}, "tracking_url"),
    ({**SHIPMENT, "tracking_url": "https://example.com/" + "a" * 2000}, "tracking_url"),
    ({**SHIPMENT, "tracking_url": None}, "tracking_url"),
])
def test_an_invalid_ship_body_is_422_naming_the_field(make_client, body, field):
    # given a placed order
    order = OrderFactory()

    # when the body fails validation
    response = make_client(["orders:write"]).post(ship_url(order.pk), body, format="json")

    # then 422 names the field, and the order is untouched
    error = assert_error(response, 422, "validation_failed")
    assert field in error["details"], error
    assert Order.objects.get(pk=order.pk).status == OrderStatus.PLACED
    assert not Event.objects.exists()


def test_a_ship_body_that_is_not_an_object_is_422_and_malformed_json_400(make_client):
    order = OrderFactory()
    client = make_client(["orders:write"])
    assert_error(client.post(ship_url(order.pk), ["DHL"], format="json"), 422,
                 "validation_failed")
    assert_error(client.post(ship_url(order.pk), "{", content_type="application/json"), 400,
                 "malformed_json")


def test_an_empty_tracking_url_means_none(make_client):
    order = OrderFactory()
    response = make_client(["orders:write"]).post(
        ship_url(order.pk), {**SHIPMENT, "tracking_url": ""}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["tracking_url"] == ""
    assert "tracking_url" not in Event.objects.get().payload


def test_clients_cannot_publish_order_shipped(make_client):
    # given a key that may publish events
    client = make_client(["events:publish"])

    # when it publishes order.shipped itself (with the type's own example)
    from domain.events.registry import get_event_type

    example = get_event_type("order.shipped").example
    response = client.post(reverse("event-publish"), {"type": "order.shipped",
                                                      "payload": example}, format="json")

    # then only the ship service may: the type is unknown to clients
    assert_error(response, 422, "unknown_event_type")


def test_the_schema_documents_both_operations():
    document = json.loads(Client().get("/api/schema?format=json").content)
    ship = document["paths"]["/api/v1/orders/{order_id}/ship"]["post"]
    read = document["paths"]["/api/v1/orders/{order_id}"]["get"]
    assert (ship["operationId"], read["operationId"]) == ("orders_ship", "orders_retrieve")
    assert {"200", "404", "409", "422"} <= set(ship["responses"])
    body = document["components"]["schemas"]["OrderShipRequest"]
    assert body["required"] == ["carrier", "tracking_number"]
    # a link, or the empty string (no link): exactly one branch matches either
    link, empty = body["properties"]["tracking_url"]["oneOf"]
    assert (link["pattern"], empty["maxLength"]) == ("^https?://[!-~]+$", 0)

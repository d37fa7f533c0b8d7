from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from domain.access.models import Scopes
from domain.common.fields import StrictCharField
from domain.common.openapi import TAKEN_AS_SENT, error_responses
from domain.orders import selectors, services
from domain.orders.models import OrderStatus

_ORDER_ID = OpenApiParameter("order_id", OpenApiTypes.UUID, OpenApiParameter.PATH)

# A tracking link: http(s) and printable ASCII without spaces. Written as a pattern that
# Python and JSON Schema read the same way (a class of plain code points), not as Django's URL
# validator, whose rules `format: uri` cannot state; a link with other characters is sent
# percent-encoded. The empty string (no link) is allowed beside it: DRF takes a blank value
# before any validator, and drf-spectacular documents it as a second `oneOf` branch (so the
# pattern must not match "" too, or "" would match both branches and fail the `oneOf`).
# `\Z`, not `$`: Python's `$` also matches before a final newline, which the schema's (ECMA)
# `$` does not; drf-spectacular writes `\Z` into the schema as `$`.
TRACKING_URL_PATTERN = r"^https?://[!-~]+\Z"


@extend_schema_serializer(component_name="Order")
class OrderOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    number = serializers.CharField()
    customer = serializers.UUIDField(source="customer_id")
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    carrier = serializers.CharField()
    tracking_number = serializers.CharField()
    tracking_url = serializers.CharField()
    shipped_at = serializers.DateTimeField(allow_null=True)
    total = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class OrderDetailApi(APIView):
    required_scopes = {"GET": (Scopes.ORDERS_READ, Scopes.ORDERS_WRITE)}
    throttle_scope = "read"

    @extend_schema(operation_id="orders_retrieve", parameters=[_ORDER_ID],
                   responses={200: OrderOutputSerializer, **error_responses(401, 403, 404)})
    def get(self, request, order_id):
        return Response(OrderOutputSerializer(selectors.order_get(order_id=order_id)).data)


class OrderShipApi(APIView):
    required_scopes = {"POST": (Scopes.ORDERS_WRITE,)}
    throttle_scope = "write"

    @extend_schema_serializer(component_name="OrderShip")
    class InputSerializer(serializers.Serializer):
        carrier = StrictCharField(max_length=64, **TAKEN_AS_SENT)
        tracking_number = StrictCharField(max_length=100, **TAKEN_AS_SENT)
        tracking_url = StrictCharField(
            max_length=2000, required=False, allow_blank=True, default="",
            trim_whitespace=False,
            validators=[RegexValidator(TRACKING_URL_PATTERN, "Enter an http(s) URL.")],
            help_text="An http(s) link to the carrier's tracking page (printable ASCII, "
            "no spaces); empty or left out: none.")

    @extend_schema(
        operation_id="orders_ship", parameters=[_ORDER_ID], request=InputSerializer,
        responses={200: OrderOutputSerializer, **error_responses(400, 401, 403, 404, 409, 422)},
        description="Mark a placed order shipped; publishes `order.shipped` (an email and an "
        "in-app notification to the customer, and the key's subscribed webhooks). The same "
        "shipment sent again answers the order with no second event; any other ship of an "
        "order that is not `placed` is 409 `order_not_shippable`.",
    )
    def post(self, request, order_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = services.order_ship(order=order_id, **serializer.validated_data,
                                    api_key=request.auth, correlation_id=request.correlation_id)
        return Response(OrderOutputSerializer(order).data)

from __future__ import annotations

import re

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from domain.access.models import Scopes
from domain.catalog import selectors, services
from domain.catalog.models import ProductStatus
from domain.common.errors import ValidationFailed
from domain.common.openapi import TAKEN_AS_SENT, error_responses


@extend_schema_serializer(component_name="Product")
class ProductOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    sku = serializers.CharField()
    name = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    stock = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ProductStatus.choices)
    category = serializers.CharField()
    updated_at = serializers.DateTimeField()


_errors = error_responses


def _cache_header(hit: bool) -> dict[str, str]:
    return {"X-Cache": "hit" if hit else "miss"}


class ProductListApi(APIView):
    required_scopes = {"GET": (Scopes.PRODUCTS_READ,)}
    throttle_scope = "read"

    @extend_schema_serializer(component_name="ProductFilter")
    class FilterSerializer(serializers.Serializer):
        category = serializers.CharField(required=False, max_length=64, **TAKEN_AS_SENT)
        after = serializers.CharField(required=False, max_length=64, **TAKEN_AS_SENT)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)

    @extend_schema_serializer(component_name="ProductPage")
    class OutputSerializer(serializers.Serializer):
        results = ProductOutputSerializer(many=True)
        next_after = serializers.CharField(allow_null=True)

    @extend_schema(operation_id="products_list", parameters=[FilterSerializer],
                   responses={200: OutputSerializer, **_errors(401, 403, 422)})
    def get(self, request):
        # A plain dict: a QueryDict's empty value reads as "not given" (see JobListCreateApi).
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        page, hit = selectors.product_list_cached(
            category=filters.validated_data.get("category"),
            after_sku=filters.validated_data.get("after"),
            limit=filters.validated_data["limit"],
        )
        return Response(page, headers=_cache_header(hit))


PRICE_PATTERN = "^[0-9]{1,10}([.][0-9]{1,2})?$"


@extend_schema_field({"type": "string", "pattern": PRICE_PATTERN})
class PriceField(serializers.DecimalField):
    """A price as the API writes it: a string of at most 10 digits, then at most 2 decimals.
    DRF's DecimalField also takes JSON numbers (floats: 0.1 + 0.2), exponents, signs and
    surrounding spaces, none of which the schema can promise; only the written form is taken."""

    _written = re.compile(PRICE_PATTERN)

    def __init__(self, **kwargs):
        super().__init__(max_digits=12, decimal_places=2, min_value=0, **kwargs)

    def to_internal_value(self, data):
        if not (isinstance(data, str) and self._written.fullmatch(data)):
            self.fail("invalid")
        return super().to_internal_value(data)


class _PatchBodyRequired(AutoSchema):
    """The PATCH body is required (an empty one is 422: nothing to change); drf-spectacular
    infers that only from required fields, and every field of a patch is optional."""

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body is not None:
            body["required"] = True
        return body


class ProductDetailApi(APIView):
    required_scopes = {"GET": (Scopes.PRODUCTS_READ,), "PATCH": (Scopes.PRODUCTS_WRITE,)}
    throttle_scope = {"GET": "read", "PATCH": "write"}
    schema = _PatchBodyRequired()

    @extend_schema_serializer(component_name="ProductPatch")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False, **TAKEN_AS_SENT)
        price = PriceField(required=False)
        stock = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
        status = serializers.ChoiceField(choices=ProductStatus.choices, required=False)
        category = serializers.CharField(max_length=64, required=False, **TAKEN_AS_SENT)

    @extend_schema(
        operation_id="products_retrieve",
        parameters=[OpenApiParameter("product_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: ProductOutputSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request, product_id):
        data, hit = selectors.product_get_cached(product_id=product_id)
        return Response(data, headers=_cache_header(hit))

    @extend_schema(operation_id="products_partial_update", request=InputSerializer,
                   responses={200: ProductOutputSerializer, **_errors(400, 401, 403, 404, 422)})
    def patch(self, request, product_id):
        if not isinstance(request.data, dict):
            raise ValidationFailed("The body must be a JSON object.")
        unknown = sorted(set(request.data) - set(self.InputSerializer().fields))
        if unknown:
            raise ValidationFailed("Unknown or read-only fields.", details={"unknown": unknown})
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if not serializer.validated_data:
            raise ValidationFailed("Nothing to change: give at least one field.",
                                   details={"fields": list(services.UPDATABLE_FIELDS)})
        product = services.product_update(
            product_id=product_id, changes=serializer.validated_data, api_key=request.auth,
            correlation_id=request.correlation_id,
        )
        return Response(selectors.product_to_dict(product))


class ProductPatchSchema(OpenApiSerializerExtension):
    """What the PATCH refuses, in the schema: a field it does not know (422 with
    details.unknown) and an empty patch (422: nothing to change)."""

    target_class = ProductDetailApi.InputSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target_class, direction,
                                             bypass_extensions=True)
        return {**schema, "minProperties": 1, "additionalProperties": False}

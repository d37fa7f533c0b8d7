"""OpenAPI pieces shared by the API modules."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ERROR_RESPONSE = inline_serializer(
    "Error",
    {"error": inline_serializer("ErrorBody", {
        "code": serializers.CharField(), "message": serializers.CharField(),
        "details": serializers.DictField()})},
)


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """The error shape under each status code; 429 is always possible (per-key throttling)."""
    return {code: OpenApiResponse(ERROR_RESPONSE) for code in (*codes, 429)}

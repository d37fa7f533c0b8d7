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
    """The error shape under each status code; 429 (per-key throttling) and 503 (the database
    does not answer; with Retry-After) are always possible."""
    return {code: OpenApiResponse(ERROR_RESPONSE) for code in (*codes, 429, 503)}

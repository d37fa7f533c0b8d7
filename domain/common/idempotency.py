"""The Idempotency-Key contract every creating endpoint shares (events, batches,
notifications): the header, its bound, and the answer — 202 for a new request, 200 with
`Idempotent-Replayed: true` for a replay of an earlier one."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.response import Response

from domain.common.errors import ValidationFailed

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

REPLAYED_PARAMETER = OpenApiParameter(
    REPLAYED_HEADER, str, OpenApiParameter.HEADER, response=[200],
    description="`true`: the answer of an earlier request with the same Idempotency-Key.")


def idempotency_key(request) -> str | None:
    """The request's key, if it sent one; longer than 255 characters is 422."""
    key = request.headers.get(IDEMPOTENCY_HEADER) or None
    if key is not None and len(key) > 255:
        raise ValidationFailed("Idempotency-Key is longer than 255 characters.",
                               code="invalid_idempotency_key")
    return key


def accepted_or_replayed(body, *, created: bool, headers: dict | None = None) -> Response:
    headers = headers or {}
    if created:
        return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)
    return Response(body, status=status.HTTP_200_OK, headers={**headers, REPLAYED_HEADER: "true"})

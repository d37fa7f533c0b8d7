"""The thin HTTP layer for /api/v1/webhook-endpoints and /api/v1/deliveries (every channel's):
validate the shape, call one service or selector, render. Notifications to people, inboxes,
preferences and unsubscribing are in notification_apis.py."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from domain.access.audit import actor_from_request, audit_record
from domain.access.models import AuditAction, Scopes
from domain.common.errors import ValidationFailed
from domain.common.fields import InstantField, StrictCharField
from domain.common.openapi import cursor_page, error_responses
from domain.common.pagination import CreatedAtCursorPagination
from domain.common.rendering import absolute_url, iso
from domain.events.registry import event_types
from domain.notifications import selectors, services
from domain.notifications.models import (
    AttemptResult,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
    WebhookEndpoint,
)

_errors = error_responses
_MANAGE = (Scopes.WEBHOOKS_MANAGE,)
_READ_DELIVERIES = (Scopes.WEBHOOKS_MANAGE, Scopes.NOTIFICATIONS_READ)
_CURSOR = OpenApiParameter("cursor", {"type": "string", "minLength": 1,
                                      "pattern": "^[A-Za-z0-9+/]+={0,2}$"},
                           description="from a page's `next` or `previous` link, as written "
                           "there (any other value is 422 invalid_cursor)")


# --- Endpoints -------------------------------------------------------------------------------

@extend_schema_serializer(component_name="WebhookEndpoint")
class EndpointOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.URLField(help_text="Where deliveries are POSTed.")
    event_types = serializers.ListField(child=serializers.CharField(), allow_null=True,
                                        help_text="null: every event type.")
    description = serializers.CharField(allow_blank=True)
    enabled = serializers.BooleanField()
    state = serializers.ChoiceField(choices=EndpointState.choices)
    disabled_reason = serializers.CharField(allow_blank=True)
    rate_limit = serializers.IntegerField(allow_null=True, help_text="messages per second")
    consecutive_failures = serializers.IntegerField()
    failing_since = serializers.DateTimeField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_failure_at = serializers.DateTimeField(allow_null=True)
    circuit_open_until = serializers.DateTimeField(allow_null=True)
    previous_secret_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="until then the rotated-out secret signs too")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    deliveries = serializers.URLField(help_text="this endpoint's deliveries")

    def to_representation(self, endpoint: WebhookEndpoint) -> dict:
        request = self.context["request"]
        return {
            "id": str(endpoint.pk), "url": endpoint.url, "event_types": endpoint.event_types,
            "description": endpoint.description, "enabled": endpoint.enabled,
            "state": str(endpoint.state), "disabled_reason": endpoint.disabled_reason,
            "rate_limit": endpoint.rate_limit,
            "consecutive_failures": endpoint.consecutive_failures,
            "failing_since": iso(endpoint.failing_since),
            "last_success_at": iso(endpoint.last_success_at),
            "last_failure_at": iso(endpoint.last_failure_at),
            "circuit_open_until": iso(endpoint.circuit_open_until),
            "previous_secret_expires_at": iso(endpoint.previous_secret_expires_at),
            "created_at": iso(endpoint.created_at), "updated_at": iso(endpoint.updated_at),
            "deliveries": request.build_absolute_uri(reverse("delivery-list"))
            + f"?endpoint={endpoint.pk}",
        }


@extend_schema_serializer(component_name="WebhookEndpointWithSecret")
class EndpointWithSecretSerializer(EndpointOutputSerializer):
    secret = serializers.CharField(help_text="`whsec_…`: shown only in this answer.")

    def to_representation(self, endpoint: WebhookEndpoint) -> dict:
        return {**super().to_representation(endpoint), "secret": endpoint.secret}


def _event_type_field(**kwargs) -> serializers.ListField:
    names = [t.name for t in event_types()]
    return serializers.ListField(
        child=serializers.ChoiceField(choices=names), allow_null=True, max_length=100,
        help_text="event types to receive; null or [] for every type", **kwargs)


_URL_HELP = ("http or https (otherwise 422 unsafe_url); its host a domain name whose last "
             "label has two letters or more, `localhost` or an IP address, at most 253 "
             "characters (Django's URL validator); the host must resolve to public addresses "
             "only (or to networks in WEBHOOK_ALLOWED_NETWORKS), otherwise 422 unsafe_url, "
             "and resolve at all, otherwise 422 unresolvable_url")


@extend_schema_field({"type": "string", "format": "uri", "maxLength": 2000,
                      "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"})
class WebhookUrlField(serializers.URLField):
    """A webhook's URL. The scheme is the SSRF guard's to refuse (422 unsafe_url, as for an
    address that is not public), not this field's: the schema states it as a pattern."""

    def __init__(self, **kwargs):
        super().__init__(max_length=2000, help_text=_URL_HELP, **kwargs)


class EndpointInputSerializer(serializers.Serializer):
    url = WebhookUrlField()
    event_types = _event_type_field(required=False, default=None)
    description = StrictCharField(max_length=500, allow_blank=True, required=False,
                                        default="", trim_whitespace=False)
    enabled = serializers.BooleanField(required=False, default=True)
    rate_limit = serializers.IntegerField(min_value=1, max_value=100_000, allow_null=True,
                                          required=False, default=None,
                                          help_text="messages per second; null: no limit")


@extend_schema_serializer(component_name="WebhookEndpointPatch")
class EndpointPatchSerializer(serializers.Serializer):
    url = WebhookUrlField(required=False)
    event_types = _event_type_field(required=False)
    description = StrictCharField(max_length=500, allow_blank=True, required=False,
                                        trim_whitespace=False)
    enabled = serializers.BooleanField(required=False, help_text=(
        "false disables it (waiting deliveries are parked); true on a disabled endpoint "
        "enables it and resumes its parked deliveries, oldest first"))
    rate_limit = serializers.IntegerField(min_value=1, max_value=100_000, allow_null=True,
                                          required=False)


class EndpointPatchSchema(OpenApiSerializerExtension):
    """What the PATCH refuses, in the schema: an unknown field and an empty patch (422)."""

    target_class = EndpointPatchSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target_class, direction,
                                             bypass_extensions=True)
        return {**schema, "minProperties": 1, "additionalProperties": False}


@extend_schema_serializer(component_name="WebhookEndpointInput")
class _EndpointInput(EndpointInputSerializer):
    pass


class EndpointListCreateApi(APIView):
    required_scopes = {"GET": _MANAGE, "POST": _MANAGE}
    throttle_scope = {"GET": "read", "POST": "write"}

    @extend_schema(operation_id="webhook_endpoints_list", parameters=[
        OpenApiParameter("limit", {"type": "integer", "minimum": 1,
                                   "maximum": CreatedAtCursorPagination.max_page_size},
                         description=f"page size, {CreatedAtCursorPagination.page_size} if "
                         "not given"),
        _CURSOR],
        responses={200: cursor_page("WebhookEndpointPage", EndpointOutputSerializer(many=True)),
                   **_errors(401, 403, 422)})
    def get(self, request):
        paginator = CreatedAtCursorPagination()
        page = paginator.paginate_queryset(selectors.endpoint_list(api_key=request.auth),
                                           request, view=self)
        data = EndpointOutputSerializer(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)

    @extend_schema(operation_id="webhook_endpoints_create", request=_EndpointInput,
                   responses={201: EndpointWithSecretSerializer,
                              **_errors(400, 401, 403, 413, 422)})
    def post(self, request):
        serializer = _EndpointInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(api_key=request.auth, **serializer.validated_data)
        return Response(EndpointWithSecretSerializer(endpoint, context={"request": request})
                        .data, status=status.HTTP_201_CREATED)


class EndpointDetailApi(APIView):
    required_scopes = {"GET": _MANAGE, "PATCH": _MANAGE, "DELETE": _MANAGE}
    throttle_scope = {"GET": "read", "PATCH": "write", "DELETE": "write"}

    @extend_schema(operation_id="webhook_endpoints_retrieve",
                   responses={200: EndpointOutputSerializer, **_errors(401, 403, 404)})
    def get(self, request, endpoint_id):
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id, api_key=request.auth)
        return Response(EndpointOutputSerializer(endpoint, context={"request": request}).data)

    @extend_schema(operation_id="webhook_endpoints_partial_update",
                   request=EndpointPatchSerializer,
                   responses={200: EndpointOutputSerializer,
                              **_errors(400, 401, 403, 404, 413, 422)})
    def patch(self, request, endpoint_id):
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id, api_key=request.auth)
        if not isinstance(request.data, dict):
            raise ValidationFailed("The body must be a JSON object.")
        unknown = sorted(set(request.data) - set(EndpointPatchSerializer().fields))
        if unknown:
            raise ValidationFailed("Unknown or read-only fields.", details={"unknown": unknown})
        serializer = EndpointPatchSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if not serializer.validated_data:
            raise ValidationFailed("Nothing to change: give at least one field.",
                                   details={"fields": sorted(EndpointPatchSerializer().fields)})
        state_before = endpoint.state
        endpoint = services.endpoint_update(endpoint=endpoint, **serializer.validated_data)
        if "enabled" in serializer.validated_data:  # disable or enable: a pause or a resume
            audit_record(actor=actor_from_request(request),
                         action=AuditAction.RESUME if serializer.validated_data["enabled"]
                         else AuditAction.PAUSE, target_type="webhook_endpoint",
                         target=endpoint.pk,
                         detail={"state_before": state_before, "state": endpoint.state})
        return Response(EndpointOutputSerializer(endpoint, context={"request": request}).data)

    @extend_schema(operation_id="webhook_endpoints_destroy",
                   responses={204: None, **_errors(401, 403, 404)})
    def delete(self, request, endpoint_id):
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id, api_key=request.auth)
        services.endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_serializer(component_name="WebhookSecretRotateInput")
class RotateInputSerializer(serializers.Serializer):
    overlap_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=7 * 86400,
        help_text="how long the old secret keeps signing beside the new one "
        "(default WEBHOOK_SECRET_OVERLAP_SECONDS, 24 h)")


class EndpointRotateSecretApi(APIView):
    required_scopes = {"POST": _MANAGE}
    throttle_scope = "write"

    @extend_schema(operation_id="webhook_endpoints_rotate_secret", request=RotateInputSerializer,
                   responses={200: EndpointWithSecretSerializer,
                              **_errors(400, 401, 403, 404, 413, 422)})
    def post(self, request, endpoint_id):
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id, api_key=request.auth)
        serializer = RotateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = services.endpoint_rotate_secret(
            endpoint=endpoint, overlap_seconds=serializer.validated_data.get("overlap_seconds"))
        audit_record(actor=actor_from_request(request), action=AuditAction.ROTATE,
                     target_type="webhook_endpoint", target=endpoint.pk,
                     detail={"previous_secret_expires_at":
                             iso(endpoint.previous_secret_expires_at)})
        return Response(EndpointWithSecretSerializer(endpoint, context={"request": request})
                        .data)


@extend_schema_serializer(component_name="WebhookRecoverInput")
class RecoverInputSerializer(serializers.Serializer):
    since = InstantField(help_text="deliveries made at or after")
    until = InstantField(required=False, help_text=(
        "made before (default: now); after `since` (an empty or reversed range is 422, "
        "under details.until)"))
    dry_run = serializers.BooleanField(required=False, default=False,
                                       help_text="count only; send nothing")

    def validate(self, attrs):
        if attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "must be after since"})
        return attrs


_RECOVERED = inline_serializer("WebhookRecovered", {
    "recovered": serializers.IntegerField(help_text="deliveries sent again (dry run: that "
                                          "would be)"),
    "dry_run": serializers.BooleanField()})


class EndpointRecoverApi(APIView):
    """Send again every failed or parked delivery of the endpoint in a time window."""

    required_scopes = {"POST": _MANAGE}
    throttle_scope = "write"

    @extend_schema(operation_id="webhook_endpoints_recover", request=RecoverInputSerializer,
                   responses={200: _RECOVERED, 202: _RECOVERED,
                              **_errors(400, 401, 403, 404, 409, 413, 422)})
    def post(self, request, endpoint_id):
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id, api_key=request.auth)
        serializer = RecoverInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dry_run = serializer.validated_data["dry_run"]
        count = services.endpoint_recover(endpoint=endpoint, **serializer.validated_data)
        if not dry_run:
            data = serializer.validated_data
            audit_record(actor=actor_from_request(request), action=AuditAction.RECOVER,
                         target_type="webhook_endpoint", target=endpoint.pk, count=count,
                         detail={"since": iso(data["since"]), "until": iso(data.get("until"))})
        return Response({"recovered": count, "dry_run": dry_run},
                        status=status.HTTP_200_OK if dry_run else status.HTTP_202_ACCEPTED)


# --- Deliveries ------------------------------------------------------------------------------

@extend_schema_serializer(component_name="Delivery")
class DeliveryOutputSerializer(serializers.Serializer):
    """One delivery of any channel: a webhook message to an endpoint, or a notification to a
    recipient by email or in-app. The fields of the other kind are null."""

    id = serializers.UUIDField()
    channel = serializers.ChoiceField(choices=Channel.choices)
    message_id = serializers.CharField(allow_null=True, help_text=(
        "webhook: its webhook-id, the same on every attempt; null for email and in-app"))
    event = serializers.UUIDField(allow_null=True, help_text="webhook: the event it announces")
    event_type = serializers.CharField(allow_null=True, help_text="webhook: the message's type")
    endpoint = serializers.UUIDField(allow_null=True, help_text="webhook: where it goes")
    notification = serializers.UUIDField(allow_null=True,
                                         help_text="email and in-app: the notification")
    recipient_id = serializers.CharField(allow_null=True,
                                         help_text="email and in-app: who it goes to")
    address = serializers.CharField(allow_null=True, help_text=(
        "email: the address it goes to (empty when the recipient has none; then `skipped`)"))
    digest = serializers.UUIDField(allow_null=True, help_text=(
        "email of a digest template: the digest it joined (one email for all of them)"))
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    reason = serializers.CharField(allow_blank=True, help_text="why it was skipped or parked")
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.JSONField(allow_null=True)
    created_at = serializers.DateTimeField()
    attempts_url = serializers.URLField()
    url = serializers.URLField()

    def to_representation(self, delivery: Delivery) -> dict:
        request = self.context["request"]
        waiting_since = getattr(delivery, "job_next_retry_at", None)
        next_at = delivery.next_attempt_at or (
            waiting_since if delivery.status == DeliveryStatus.RETRYING else None)
        webhook = delivery.channel == Channel.WEBHOOK
        message = delivery.message if webhook and delivery.message_id else None
        return {
            "id": str(delivery.pk), "channel": str(delivery.channel),
            "message_id": delivery.message_id if webhook else None,
            "event": str(message.event_id) if message and message.event_id else None,
            "event_type": message.type if message else None,
            "endpoint": str(delivery.endpoint_id) if webhook and delivery.endpoint_id else None,
            "notification": (str(delivery.notification_id) if delivery.notification_id
                             else None),
            "recipient_id": None if webhook else delivery.recipient_id,
            "address": delivery.address if delivery.channel == Channel.EMAIL else None,
            "digest": str(delivery.digest_id) if delivery.digest_id else None,
            "status": str(delivery.status), "reason": delivery.reason,
            "attempts": delivery.attempts,
            "next_attempt_at": iso(next_at), "last_attempt_at": iso(delivery.last_attempt_at),
            "delivered_at": iso(delivery.delivered_at), "last_error": delivery.last_error,
            "created_at": iso(delivery.created_at),
            "attempts_url": absolute_url(request, "delivery-attempts", delivery.pk),
            "url": absolute_url(request, "delivery-detail", delivery.pk),
        }


@extend_schema_serializer(component_name="DeliveryAttempt")
class AttemptOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    at = serializers.DateTimeField(help_text="when the request (or the email) was sent")
    outcome = serializers.ChoiceField(choices=AttemptResult.choices)
    http_status = serializers.IntegerField(allow_null=True, help_text="webhook: the answer's")
    smtp_code = serializers.IntegerField(allow_null=True, help_text=(
        "email: the SMTP server's reply code (its text is `response_excerpt`)"))
    latency_ms = serializers.IntegerField(allow_null=True)
    response_excerpt = serializers.CharField(allow_blank=True, help_text=(
        "webhook: the first WEBHOOK_RESPONSE_EXCERPT_BYTES (1 KiB) of the answer's body; "
        "email: the SMTP server's reply text"))
    error_type = serializers.CharField(allow_blank=True)
    error_message = serializers.CharField(allow_blank=True)

    def to_representation(self, attempt: DeliveryAttempt) -> dict:
        return {"number": attempt.number, "at": iso(attempt.at), "outcome": attempt.outcome,
                "http_status": attempt.http_status, "smtp_code": attempt.smtp_code,
                "latency_ms": attempt.latency_ms,
                "response_excerpt": attempt.response_excerpt,
                "error_type": attempt.error_type, "error_message": attempt.error_message}


class EndpointTestApi(APIView):
    """A signed `webhook.test` message, delivered now; the answer says what happened."""

    required_scopes = {"POST": _MANAGE}
    throttle_scope = "write"

    @extend_schema(operation_id="webhook_endpoints_test", request=None,
                   responses={200: inline_serializer("WebhookTestResult", {
                       "delivered": serializers.BooleanField(),
                       "delivery": DeliveryOutputSerializer(),
                       "attempt": AttemptOutputSerializer()}), **_errors(401, 403, 404)})
    def post(self, request, endpoint_id):
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id, api_key=request.auth)
        delivery, attempt = services.endpoint_test(endpoint=endpoint)
        context = {"request": request}
        return Response({
            "delivered": delivery.status == DeliveryStatus.DELIVERED,
            "delivery": DeliveryOutputSerializer(delivery, context=context).data,
            "attempt": AttemptOutputSerializer(attempt).data})


class DeliveryListApi(APIView):
    required_scopes = {"GET": _READ_DELIVERIES}
    throttle_scope = "read"

    @extend_schema_serializer(component_name="DeliveryFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)
        endpoint = serializers.UUIDField(required=False, help_text="a webhook endpoint's")
        event = serializers.UUIDField(required=False, help_text="webhook deliveries of an event")
        channel = serializers.ChoiceField(choices=Channel.choices, required=False)
        recipient = StrictCharField(required=False, max_length=200, trim_whitespace=False,
                                    help_text="email and in-app deliveries to a recipient id")
        notification = serializers.UUIDField(required=False,
                                             help_text="the deliveries of a notification")
        limit = serializers.IntegerField(
            required=False, min_value=1, max_value=CreatedAtCursorPagination.max_page_size,
            help_text=f"page size, {CreatedAtCursorPagination.page_size} if not given")

    @extend_schema(operation_id="deliveries_list", parameters=[FilterSerializer, _CURSOR],
                   responses={200: cursor_page("DeliveryPage", DeliveryOutputSerializer(many=True)),
                       **_errors(401, 403, 422)})
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        deliveries = selectors.delivery_list(
            api_key=request.auth, status=filters.validated_data.get("status"),
            endpoint_id=filters.validated_data.get("endpoint"),
            event_id=filters.validated_data.get("event"),
            channel=filters.validated_data.get("channel"),
            recipient_id=filters.validated_data.get("recipient"),
            notification_id=filters.validated_data.get("notification"))
        paginator = CreatedAtCursorPagination()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        data = DeliveryOutputSerializer(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)


class DeliveryDetailApi(APIView):
    required_scopes = {"GET": _READ_DELIVERIES}
    throttle_scope = "read"

    @extend_schema(operation_id="deliveries_retrieve",
                   responses={200: DeliveryOutputSerializer, **_errors(401, 403, 404)})
    def get(self, request, delivery_id):
        delivery = selectors.delivery_get(delivery_id=delivery_id, api_key=request.auth)
        return Response(DeliveryOutputSerializer(delivery, context={"request": request}).data)


class DeliveryAttemptListApi(APIView):
    required_scopes = {"GET": _READ_DELIVERIES}
    throttle_scope = "read"

    @extend_schema(operation_id="deliveries_attempts_list",
                   responses={200: AttemptOutputSerializer(many=True),
                              **_errors(401, 403, 404)})
    def get(self, request, delivery_id):
        delivery = selectors.delivery_get(delivery_id=delivery_id, api_key=request.auth)
        attempts = selectors.delivery_attempts(delivery=delivery)
        return Response(AttemptOutputSerializer(attempts, many=True).data)

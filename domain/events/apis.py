"""The thin HTTP layer for /api/v1/events and /api/v1/event-types: validate the shape, call
one service or selector, render."""

from __future__ import annotations

import logging
from functools import cached_property

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from domain.access.models import Scopes
from domain.common.errors import ValidationFailed
from domain.common.fields import InstantField
from domain.common.idempotency import (
    IDEMPOTENCY_HEADER,
    REPLAYED_PARAMETER,
    accepted_or_replayed,
    idempotency_key,
)
from domain.common.openapi import (
    component_name,
    error_responses,
    one_of_components,
)
from domain.common.rendering import absolute_url, iso
from domain.common.schemas import openapi_schema
from domain.events import selectors, services
from domain.events.models import Event
from domain.events.registry import event_types
from domain.jobs.apis import JobOutputSerializer
from domain.jobs.models import Job, JobStatus
from domain.jobs.selectors import event_jobs

logger = logging.getLogger(__name__)

PREFER_HEADER = "Prefer"
RETURN_MINIMAL = "return=minimal"
_errors = error_responses


@extend_schema_serializer(component_name="Event")
class EventOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    status = serializers.CharField()
    payload = serializers.JSONField()
    occurred_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    dispatched_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    correlation_id = serializers.CharField()
    jobs = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    @extend_schema_field(JobOutputSerializer(many=True))
    def get_jobs(self, event: Event) -> list[dict]:
        return JobOutputSerializer(self._jobs(event), many=True, context=self.context).data

    def get_url(self, event: Event) -> str:
        return absolute_url(self.context["request"], "event-detail", event.pk)

    def to_representation(self, event: Event) -> dict:
        # As JobOutputSerializer.to_representation: the declared fields, rendered directly.
        return {
            "id": str(event.pk),
            "type": event.type,
            "status": str(event.status),
            "payload": event.payload,
            "occurred_at": iso(event.occurred_at),
            "created_at": iso(event.created_at),
            "dispatched_at": iso(event.dispatched_at),
            "completed_at": iso(event.completed_at),
            "correlation_id": event.correlation_id,
            "jobs": [self._job_serializer.to_representation(job) for job in self._jobs(event)],
            "url": absolute_url(self.context["request"], "event-detail", event.pk),
        }

    @cached_property
    def _job_serializer(self) -> JobOutputSerializer:
        return JobOutputSerializer(context=self.context)

    def _jobs(self, event: Event) -> list[Job]:
        return _context_jobs(self.context, event)


@extend_schema_serializer(component_name="JobMinimal")
class JobMinimalOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)


@extend_schema_serializer(component_name="EventMinimal")
class EventMinimalOutputSerializer(serializers.Serializer):
    """The answer to `Prefer: return=minimal` (RFC 7240): ids, statuses and where to poll,
    without the payloads."""

    # Why it exists: the full answer echoes every payload, so a batch of large payloads got an
    # answer as large as its request, built in the web process's memory on top of it.
    id = serializers.UUIDField()
    status = serializers.CharField()
    jobs = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    @extend_schema_field(JobMinimalOutputSerializer(many=True))
    def get_jobs(self, event: Event) -> list[dict]:
        return JobMinimalOutputSerializer(_context_jobs(self.context, event), many=True).data

    def get_url(self, event: Event) -> str:
        return absolute_url(self.context["request"], "event-detail", event.pk)

    def to_representation(self, event: Event) -> dict:
        # The declared fields, rendered directly, as EventOutputSerializer does.
        return {
            "id": str(event.pk),
            "status": str(event.status),
            "jobs": [{"id": str(job.pk), "status": str(job.status)}
                     for job in _context_jobs(self.context, event)],
            "url": absolute_url(self.context["request"], "event-detail", event.pk),
        }


def _context_jobs(context: dict, event: Event) -> list[Job]:
    """The event's jobs as the publish left them (passed in the context), else from the
    database."""
    jobs = context.get("jobs", {}).get(event.pk)
    return event_jobs(event_id=event.pk) if jobs is None else jobs


class _ClosedObject(OpenApiSerializerExtension):
    """The minimal shapes are documented closed (`additionalProperties: false`). That is their
    contract (ids and statuses only), and it keeps the `oneOf` of the two answers exact: a
    full event also has every field of the minimal one, so without it both would match."""

    target_class = EventMinimalOutputSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


class _ClosedJob(_ClosedObject):
    target_class = JobMinimalOutputSerializer


def prefers_minimal(request) -> bool:
    """RFC 7240: `Prefer: return=minimal` asks for the minimal answer. Preferences are a
    comma-separated list (repeated headers arrive joined by commas); a preference may carry
    parameters after `;`, and its value may be quoted. The first `return` counts, and anything
    else is ignored, as the RFC asks of a server that does not support it."""
    for preference in request.headers.get(PREFER_HEADER, "").split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        if name.strip().lower() == "return":
            return value.strip().strip('"').lower() == "minimal"
    return False


@extend_schema_serializer(component_name="EventInput")
class EventInputSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=100, trim_whitespace=False)  # a name, exact
    payload = serializers.JSONField()
    occurred_at = InstantField(required=False)


class EventInputSchema(OpenApiSerializerExtension):
    """An event in the schema as the server checks it: `type` is a registered type and
    `payload` follows that type's schema (otherwise 422 unknown_event_type / invalid_payload),
    so it is one branch per type, read from the registry when the schema is made."""

    target_class = EventInputSerializer

    def map_serializer(self, auto_schema, direction):
        base = auto_schema._map_serializer(self.target_class, direction, bypass_extensions=True)
        return one_of_components(auto_schema, {
            component_name(t.name, "EventInput"): {
                **base, "description": t.description,
                "properties": {**base["properties"], "type": {"type": "string", "enum": [t.name]},
                               "payload": openapi_schema(t.schema)}}
            for t in event_types(publishable=True)})


def _answer(body: dict, *, created: bool, minimal: bool) -> Response:
    """202 for a new publish, 200 with `Idempotent-Replayed` for a replay; either says when
    the minimal answer was sent (RFC 7240's Preference-Applied)."""
    return accepted_or_replayed(
        body, created=created,
        headers={"Preference-Applied": RETURN_MINIMAL} if minimal else None)


_PREFER = OpenApiParameter(
    PREFER_HEADER, str, OpenApiParameter.HEADER, enum=[RETURN_MINIMAL, "return=representation"],
    description="RFC 7240. `return=minimal`: answer ids and statuses only (the event's id, "
    "status and url, each job's id and status), with `Preference-Applied: return=minimal`. "
    "Default, or `return=representation`: the full events, payloads included.")
_PREFERENCE_APPLIED = OpenApiParameter(
    "Preference-Applied", str, OpenApiParameter.HEADER, response=[200, 202],
    description="`return=minimal` when the minimal answer was sent.")
_REPLAYED = REPLAYED_PARAMETER


class EventTypeListApi(APIView):
    required_scopes = {"GET": (Scopes.EVENTS_PUBLISH, Scopes.EVENTS_READ)}
    throttle_scope = "read"

    @extend_schema_serializer(component_name="EventType")
    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField()
        description = serializers.CharField()
        schema = serializers.JSONField(help_text="The payload's JSON Schema (draft 2020-12).")
        example = serializers.JSONField(allow_null=True, help_text="A payload that passes it.")
        handlers = serializers.ListField(child=serializers.DictField())

    @extend_schema(operation_id="event_types_list",
                   responses={200: OutputSerializer(many=True), **_errors(401, 403)})
    def get(self, request):
        data = [
            {"name": t.name, "description": t.description, "schema": t.schema,
             "example": t.example,
             "handlers": [{"name": h.name, "kind": h.kind} for h in t.handlers]}
            for t in event_types()
        ]
        return Response(self.OutputSerializer(data, many=True).data)


_EVENT_ANSWER = PolymorphicProxySerializer(
    component_name="EventPublished", resource_type_field_name=None,
    serializers=[EventOutputSerializer, EventMinimalOutputSerializer])
_BATCH_ANSWER = PolymorphicProxySerializer(
    component_name="EventBatchPublished", resource_type_field_name=None,
    serializers=[inline_serializer("EventBatch", {"events": EventOutputSerializer(many=True)}),
                 inline_serializer("EventBatchMinimal", {
                     "events": EventMinimalOutputSerializer(many=True)})])


class EventPublishApi(APIView):
    required_scopes = {"POST": (Scopes.EVENTS_PUBLISH,)}
    throttle_scope = "publish"

    @extend_schema(
        operation_id="events_publish",
        request=EventInputSerializer,
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER,
                                     description="Replays within the same API key return the "
                                     "first event; a different body with the same key is 409. "
                                     "Keys are shared with batch publishes: a key used for a "
                                     "batch is 409 here."),
                    _PREFER, _PREFERENCE_APPLIED, _REPLAYED],
        responses={202: _EVENT_ANSWER, 200: _EVENT_ANSWER,
                   **_errors(400, 401, 403, 409, 413, 422)},
    )
    def post(self, request):
        serializer = EventInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.event_publish(
            event_type=serializer.validated_data["type"],
            payload=serializer.validated_data["payload"],
            occurred_at=serializer.validated_data.get("occurred_at"),
            api_key=request.auth,
            idempotency_key=idempotency_key(request),
            correlation_id=request.correlation_id,
        )
        # The request's line in the log: its correlation id leads from here to its jobs' lines.
        logger.info("event published event_id=%s type=%s jobs=%s created=%s", result.event.pk,
                    result.event.type, ",".join(str(job.pk) for job in result.jobs) or "-",
                    str(result.created).lower(), extra={"event_id": str(result.event.pk)})
        minimal = prefers_minimal(request)
        output = EventMinimalOutputSerializer if minimal else EventOutputSerializer
        context = {"request": request, "jobs": {result.event.pk: result.jobs}}
        return _answer(output(result.event, context=context).data, created=result.created,
                       minimal=minimal)


class EventBatchPublishApi(APIView):
    required_scopes = {"POST": (Scopes.EVENTS_PUBLISH,)}
    throttle_scope = "publish"

    @property
    def max_body_bytes(self) -> int:  # read per request, like every other limit
        return settings.API_MAX_BATCH_BODY_BYTES

    @extend_schema_serializer(component_name="EventBatchInput")
    class InputSerializer(serializers.Serializer):
        events = serializers.ListField(child=EventInputSerializer(), allow_empty=False)

    @extend_schema(
        operation_id="events_batch_publish",
        request=InputSerializer,
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER,
                                     description="The whole batch is one idempotent request: "
                                     "the same key (per API key) and body answer the first "
                                     "batch's events as they are now, in the same order (200); "
                                     "a different body is 409. Keys are shared with single "
                                     "publishes: a key used for one is 409 here."),
                    _PREFER, _PREFERENCE_APPLIED, _REPLAYED],
        responses={202: _BATCH_ANSWER, 200: _BATCH_ANSWER,
                   **_errors(400, 401, 403, 409, 413, 422)},
    )
    def post(self, request):
        items = request.data.get("events") if isinstance(request.data, dict) else None
        if isinstance(items, list) and len(items) > settings.API_MAX_BATCH_EVENTS:
            # Refuse before validating thousands of items one by one.
            raise ValidationFailed(
                f"A batch holds at most {settings.API_MAX_BATCH_EVENTS} events.",
                code="batch_too_large",
                details={"limit": settings.API_MAX_BATCH_EVENTS, "received": len(items)})
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        published = services.event_publish_batch(
            events=serializer.validated_data["events"], api_key=request.auth,
            idempotency_key=idempotency_key(request), correlation_id=request.correlation_id,
        )
        logger.info("events published count=%d jobs=%d created=%s", len(published.results),
                    sum(len(r.jobs) for r in published.results),
                    str(published.created).lower())
        minimal = prefers_minimal(request)
        output = EventMinimalOutputSerializer if minimal else EventOutputSerializer
        jobs = {r.event.pk: r.jobs for r in published.results}
        data = output([r.event for r in published.results], many=True,
                      context={"request": request, "jobs": jobs}).data
        return _answer({"events": data}, created=published.created, minimal=minimal)


class EventBatchInputSchema(OpenApiSerializerExtension):
    """The batch's size bounds in the schema (read from the settings when it is made)."""

    target_class = EventBatchPublishApi.InputSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target_class, direction,
                                             bypass_extensions=True)
        schema["properties"]["events"].update(minItems=1,
                                              maxItems=settings.API_MAX_BATCH_EVENTS)
        return schema


class EventDetailApi(APIView):
    required_scopes = {"GET": (Scopes.EVENTS_READ, Scopes.EVENTS_PUBLISH)}
    throttle_scope = "read"

    @extend_schema(operation_id="events_retrieve",
                   responses={200: EventOutputSerializer, **_errors(401, 403, 404)})
    def get(self, request, event_id):
        event = selectors.event_get(event_id=event_id, api_key=request.auth)
        return Response(EventOutputSerializer(event, context={"request": request}).data)



"""The thin HTTP layer: validate the shape, call one service or selector, render."""

from __future__ import annotations

from functools import cached_property

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
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

from domain.common.errors import ValidationFailed
from domain.common.models import Scopes
from domain.common.openapi import error_responses
from domain.common.pagination import CreatedAtCursorPagination
from domain.events import selectors, services
from domain.events.models import Event, Job, JobStatus
from domain.events.registry import event_types

IDEMPOTENCY_HEADER = "Idempotency-Key"
_errors = error_responses


@extend_schema_serializer(component_name="Job")
class JobOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    handler = serializers.CharField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    replays = serializers.IntegerField()
    progress = serializers.SerializerMethodField()
    params = serializers.JSONField()
    result = serializers.JSONField()
    error = serializers.JSONField()
    event = serializers.UUIDField(source="event_id", allow_null=True)
    created_at = serializers.DateTimeField()
    run_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    next_retry_at = serializers.DateTimeField(allow_null=True)
    url = serializers.SerializerMethodField()

    @extend_schema_field(inline_serializer("Progress", {
        "done": serializers.IntegerField(), "total": serializers.IntegerField(allow_null=True)}))
    def get_progress(self, job: Job) -> dict:
        return {"done": job.progress_done, "total": job.progress_total}

    def get_url(self, job: Job) -> str:
        return _absolute(self.context["request"], "job-detail", job.pk)

    def to_representation(self, job: Job) -> dict:
        # The declared fields above are the contract (and the OpenAPI schema); this renders
        # them without DRF's per-field machinery, which cost 60% of a 500-event batch publish
        # (cProfile, bench/). tests/api/test_rendering.py holds it equal to the fields' output.
        return {
            "id": str(job.pk),
            "kind": job.kind,
            "handler": job.handler,
            "status": str(job.status),
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "replays": job.replays,
            "progress": {"done": job.progress_done, "total": job.progress_total},
            "params": job.params,
            "result": job.result,
            "error": job.error,
            "event": str(job.event_id) if job.event_id else None,
            "created_at": _iso(job.created_at),
            "run_at": _iso(job.run_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "next_retry_at": _iso(job.next_retry_at),
            "url": _absolute(self.context["request"], "job-detail", job.pk),
        }


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
        return _absolute(self.context["request"], "event-detail", event.pk)

    def to_representation(self, event: Event) -> dict:
        # As JobOutputSerializer.to_representation: the declared fields, rendered directly.
        return {
            "id": str(event.pk),
            "type": event.type,
            "status": str(event.status),
            "payload": event.payload,
            "occurred_at": _iso(event.occurred_at),
            "created_at": _iso(event.created_at),
            "dispatched_at": _iso(event.dispatched_at),
            "completed_at": _iso(event.completed_at),
            "correlation_id": event.correlation_id,
            "jobs": [self._job_serializer.to_representation(job) for job in self._jobs(event)],
            "url": _absolute(self.context["request"], "event-detail", event.pk),
        }

    @cached_property
    def _job_serializer(self) -> JobOutputSerializer:
        return JobOutputSerializer(context=self.context)

    def _jobs(self, event: Event) -> list[Job]:
        jobs = self.context.get("jobs", {}).get(event.pk)
        return selectors.event_jobs(event=event) if jobs is None else jobs


def _iso(value) -> str | None:
    """DRF's DateTimeField output under USE_TZ with TIME_ZONE = "UTC": ISO 8601, "Z"."""
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _absolute(request, name: str, pk) -> str:
    """The object's absolute URL. reverse() runs once per request and name (one batch renders
    a thousand URLs); the id is put into the reversed template."""
    cache = request.__dict__.setdefault("_url_templates", {})
    template = cache.get(name)
    if template is None:
        template = cache[name] = request.build_absolute_uri(reverse(name, args=[_URL_MARK]))
    return template.replace(_URL_MARK, str(pk))


_URL_MARK = "00000000-0000-4000-8000-00000000c0de"


@extend_schema_serializer(component_name="EventInput")
class EventInputSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=100)
    payload = serializers.JSONField()
    occurred_at = serializers.DateTimeField(required=False)


class EventTypeListApi(APIView):
    required_scopes = {"GET": (Scopes.EVENTS_PUBLISH, Scopes.EVENTS_READ)}
    throttle_scope = "read"

    @extend_schema_serializer(component_name="EventType")
    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField()
        description = serializers.CharField()
        schema = serializers.JSONField()
        handlers = serializers.ListField(child=serializers.DictField())

    @extend_schema(operation_id="event_types_list",
                   responses={200: OutputSerializer(many=True), **_errors(401, 403)})
    def get(self, request):
        data = [
            {"name": t.name, "description": t.description, "schema": t.schema,
             "handlers": [{"name": h.name, "kind": h.kind} for h in t.handlers]}
            for t in event_types()
        ]
        return Response(self.OutputSerializer(data, many=True).data)


class EventPublishApi(APIView):
    required_scopes = {"POST": (Scopes.EVENTS_PUBLISH,)}
    throttle_scope = "publish"

    @extend_schema(
        operation_id="events_publish",
        request=EventInputSerializer,
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER,
                                     description="Replays within the same API key return the "
                                     "first event; a different body with the same key is 409.")],
        responses={202: EventOutputSerializer, 200: EventOutputSerializer,
                   **_errors(400, 401, 403, 409, 413, 422)},
    )
    def post(self, request):
        serializer = EventInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        idempotency_key = request.headers.get(IDEMPOTENCY_HEADER) or None
        if idempotency_key is not None and len(idempotency_key) > 255:
            raise ValidationFailed("Idempotency-Key is longer than 255 characters.",
                                   code="invalid_idempotency_key")
        result = services.event_publish(
            event_type=serializer.validated_data["type"],
            payload=serializer.validated_data["payload"],
            occurred_at=serializer.validated_data.get("occurred_at"),
            api_key=request.auth,
            idempotency_key=idempotency_key,
            correlation_id=request.correlation_id,
        )
        context = {"request": request, "jobs": {result.event.pk: result.jobs}}
        body = EventOutputSerializer(result.event, context=context).data
        if result.created:
            return Response(body, status=status.HTTP_202_ACCEPTED)
        return Response(body, status=status.HTTP_200_OK, headers={"Idempotent-Replayed": "true"})


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
        responses={202: inline_serializer("EventBatch", {
            "events": EventOutputSerializer(many=True)}), **_errors(400, 401, 403, 413, 422)},
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
        results = services.event_publish_batch(
            events=serializer.validated_data["events"], api_key=request.auth,
            correlation_id=request.correlation_id,
        )
        jobs = {r.event.pk: r.jobs for r in results}
        data = EventOutputSerializer([r.event for r in results], many=True,
                                     context={"request": request, "jobs": jobs}).data
        return Response({"events": data}, status=status.HTTP_202_ACCEPTED)


class EventDetailApi(APIView):
    required_scopes = {"GET": (Scopes.EVENTS_READ, Scopes.EVENTS_PUBLISH)}
    throttle_scope = "read"

    @extend_schema(operation_id="events_retrieve",
                   responses={200: EventOutputSerializer, **_errors(401, 403, 404)})
    def get(self, request, event_id):
        event = selectors.event_get(event_id=event_id, api_key=request.auth)
        return Response(EventOutputSerializer(event, context={"request": request}).data)


class JobListCreateApi(APIView):
    required_scopes = {"GET": (Scopes.JOBS_READ,), "POST": (Scopes.JOBS_WRITE,)}
    throttle_scope = {"GET": "read", "POST": "write"}

    @extend_schema_serializer(component_name="JobFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
        kind = serializers.CharField(required=False, max_length=64)
        event = serializers.UUIDField(required=False)

    @extend_schema_serializer(component_name="JobInput")
    class InputSerializer(serializers.Serializer):
        kind = serializers.CharField(max_length=64)
        params = serializers.JSONField(default=dict)
        run_at = serializers.DateTimeField(required=False)

    @extend_schema(
        operation_id="jobs_list",
        parameters=[FilterSerializer, OpenApiParameter("cursor", str),
                    OpenApiParameter("limit", int)],
        responses={200: inline_serializer("JobPage", {
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": JobOutputSerializer(many=True)}), **_errors(401, 403, 422)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = selectors.job_list(
            api_key=request.auth,
            status=filters.validated_data.get("status"),
            kind=filters.validated_data.get("kind"),
            event_id=filters.validated_data.get("event"),
        )
        paginator = CreatedAtCursorPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        data = JobOutputSerializer(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)

    @extend_schema(operation_id="jobs_create", request=InputSerializer,
                   responses={202: JobOutputSerializer, **_errors(400, 401, 403, 413, 422)})
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = services.job_create(
            kind=serializer.validated_data["kind"],
            params=serializer.validated_data["params"],
            run_at=serializer.validated_data.get("run_at"),
            api_key=request.auth,
            correlation_id=request.correlation_id,
        )
        return Response(JobOutputSerializer(job, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)


class JobDetailApi(APIView):
    required_scopes = {"GET": (Scopes.JOBS_READ,)}
    throttle_scope = "read"

    @extend_schema(operation_id="jobs_retrieve",
                   responses={200: JobOutputSerializer, **_errors(401, 403, 404)})
    def get(self, request, job_id):
        job = selectors.job_get(job_id=job_id, api_key=request.auth)
        return Response(JobOutputSerializer(job, context={"request": request}).data)


class JobAttemptListApi(APIView):
    required_scopes = {"GET": (Scopes.JOBS_READ,)}
    throttle_scope = "read"

    @extend_schema_serializer(component_name="JobAttempt")
    class OutputSerializer(serializers.Serializer):
        run = serializers.IntegerField()
        number = serializers.IntegerField()
        started_at = serializers.DateTimeField()
        finished_at = serializers.DateTimeField()
        outcome = serializers.CharField()
        error_type = serializers.CharField()
        error_message = serializers.CharField()
        traceback = serializers.CharField()
        worker = serializers.CharField()

    @extend_schema(operation_id="jobs_attempts_list",
                   responses={200: OutputSerializer(many=True), **_errors(401, 403, 404)})
    def get(self, request, job_id):
        job = selectors.job_get(job_id=job_id, api_key=request.auth)
        attempts = selectors.job_attempts(job=job)
        return Response(self.OutputSerializer(attempts, many=True).data)


class JobRetryApi(APIView):
    """Replay one dead or cancelled job: fresh attempts, history kept."""

    required_scopes = {"POST": (Scopes.JOBS_WRITE,)}
    throttle_scope = "write"

    @extend_schema(operation_id="jobs_retry", request=None,
                   responses={202: JobOutputSerializer, **_errors(401, 403, 404, 409)})
    def post(self, request, job_id):
        job = selectors.job_get(job_id=job_id, api_key=request.auth)
        job = services.job_replay(job=job)
        return Response(JobOutputSerializer(job, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)


class JobCancelApi(APIView):
    required_scopes = {"POST": (Scopes.JOBS_WRITE,)}
    throttle_scope = "write"

    @extend_schema(operation_id="jobs_cancel", request=None,
                   responses={200: JobOutputSerializer, **_errors(401, 403, 404, 409)})
    def post(self, request, job_id):
        job = selectors.job_get(job_id=job_id, api_key=request.auth)
        job = services.job_cancel(job=job)
        return Response(JobOutputSerializer(job, context={"request": request}).data)


class JobBulkRetryApi(APIView):
    """Replay every dead (or cancelled) job matching a filter; answers how many."""

    required_scopes = {"POST": (Scopes.JOBS_WRITE,)}
    throttle_scope = "write"

    @extend_schema_serializer(component_name="JobBulkRetryInput")
    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=[JobStatus.DEAD, JobStatus.CANCELLED],
                                         default=JobStatus.DEAD)
        kind = serializers.CharField(required=False, max_length=64)
        event_type = serializers.CharField(required=False, max_length=100)
        since = serializers.DateTimeField(required=False, help_text="finished at or after")
        until = serializers.DateTimeField(required=False, help_text="finished before")
        limit = serializers.IntegerField(required=False, min_value=1, max_value=10_000,
                                         default=10_000)

        def validate(self, attrs):
            if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
                raise serializers.ValidationError({"until": "must be after since"})
            return attrs

    @extend_schema(operation_id="jobs_bulk_retry", request=InputSerializer,
                   responses={202: inline_serializer("JobBulkRetry", {
                       "requeued": serializers.IntegerField()}),
                       **_errors(400, 401, 403, 422)})
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        count = services.jobs_replay(api_key=request.auth, **serializer.validated_data)
        return Response({"requeued": count}, status=status.HTTP_202_ACCEPTED)

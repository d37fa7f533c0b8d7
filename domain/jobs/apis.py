"""The thin HTTP layer for /api/v1/jobs: validate the shape, call one service or selector,
render."""

from __future__ import annotations

import logging

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

from domain.access.audit import actor_from_request, audit_filter, audit_record
from domain.access.models import AuditAction, Scopes
from domain.common.errors import ValidationFailed
from domain.common.fields import InstantField, StrictCharField
from domain.common.openapi import (
    TAKEN_AS_SENT,
    component_name,
    cursor_page,
    error_responses,
    one_of_components,
)
from domain.common.pagination import CreatedAtCursorPagination
from domain.common.rendering import absolute_url, iso
from domain.common.schemas import openapi_schema
from domain.jobs import selectors, services
from domain.jobs.models import Job, JobStatus
from domain.jobs.registry import job_kinds

_errors = error_responses
logger = logging.getLogger(__name__)

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
        return absolute_url(self.context["request"], "job-detail", job.pk)

    def to_representation(self, job: Job) -> dict:
        # The declared fields above are the contract (and the OpenAPI schema); this renders
        # them without DRF's per-field machinery, which cost 60% of a 500-event batch publish
        # (cProfile, bench/). tests/domain/jobs/test_rendering.py holds it equal to the fields'
        # output.
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
            "created_at": iso(job.created_at),
            "run_at": iso(job.run_at),
            "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at),
            "next_retry_at": iso(job.next_retry_at),
            "url": absolute_url(self.context["request"], "job-detail", job.pk),
        }



class JobListCreateApi(APIView):
    required_scopes = {"GET": (Scopes.JOBS_READ,), "POST": (Scopes.JOBS_WRITE,)}
    throttle_scope = {"GET": "read", "POST": "write"}

    @extend_schema_serializer(component_name="JobFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
        kind = serializers.CharField(required=False, max_length=64, **TAKEN_AS_SENT)
        event = serializers.UUIDField(required=False)
        # Read by the paginator; declared here for the schema and the error shape.
        limit = serializers.IntegerField(
            required=False, min_value=1, max_value=CreatedAtCursorPagination.max_page_size,
            help_text=f"page size, {CreatedAtCursorPagination.page_size} if not given")

    @extend_schema_serializer(component_name="JobInput")
    class InputSerializer(serializers.Serializer):
        kind = StrictCharField(max_length=64, trim_whitespace=False)  # a name, exact
        params = serializers.JSONField(default=dict)
        run_at = InstantField(required=False)

    @extend_schema(
        operation_id="jobs_list",
        parameters=[FilterSerializer,
                    OpenApiParameter("cursor", {"type": "string", "minLength": 1,
                                                "pattern": "^[A-Za-z0-9+/]+={0,2}$"},
                                     description="from a page's `next` or `previous` link, "
                                     "as written there (any other value is 422 invalid_cursor)")],
        responses={200: cursor_page("JobPage", JobOutputSerializer(many=True)),
                   **_errors(401, 403, 422)},
    )
    def get(self, request):
        # A plain dict, not the QueryDict: DRF reads an empty value in a QueryDict as "not
        # given" (HTML forms' habit), so `?status=` listed every job. Empty is refused (422),
        # as the schema says.
        filters = self.FilterSerializer(data=request.query_params.dict())
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
        logger.info("job created job_id=%s kind=%s", job.pk, job.kind,
                    extra={"job_id": str(job.pk)})
        return Response(JobOutputSerializer(job, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)


class JobInputSchema(OpenApiSerializerExtension):
    """POST /api/v1/jobs in the schema as the server checks it: `kind` is a registered kind
    and `params` follow that kind's schema (otherwise 422 unknown_job_kind / invalid_params),
    so the body is one branch per kind, read from the registry when the schema is made."""

    target_class = JobListCreateApi.InputSerializer

    def map_serializer(self, auto_schema, direction):
        base = auto_schema._map_serializer(self.target_class, direction, bypass_extensions=True)
        branches = {}
        for kind in job_kinds(triggerable=True):
            try:  # params may be left out (they default to {}) when {} is valid params
                kind.validate_params({})
                required = ["kind"]
            except ValidationFailed:
                required = ["kind", "params"]
            branches[component_name(kind.name, "JobInput")] = {
                **base, "description": kind.description,
                "properties": {**base["properties"],
                               "kind": {"type": "string", "enum": [kind.name]},
                               "params": openapi_schema(kind.params_schema)},
                "required": required}
        return one_of_components(auto_schema, branches)


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
        audit_record(actor=actor_from_request(request), action=AuditAction.REPLAY,
                     target_type="job", target=job.pk)
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
        audit_record(actor=actor_from_request(request), action=AuditAction.CANCEL,
                     target_type="job", target=job.pk)
        return Response(JobOutputSerializer(job, context={"request": request}).data)


class JobBulkRetryApi(APIView):
    """Replay every dead (or cancelled) job matching a filter; answers how many."""

    required_scopes = {"POST": (Scopes.JOBS_WRITE,)}
    throttle_scope = "write"

    @extend_schema_serializer(component_name="JobBulkRetryInput")
    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=[JobStatus.DEAD, JobStatus.CANCELLED],
                                         default=JobStatus.DEAD)
        kind = StrictCharField(required=False, max_length=64, **TAKEN_AS_SENT)
        event_type = StrictCharField(required=False, max_length=100, **TAKEN_AS_SENT)
        since = InstantField(required=False, help_text="finished at or after")
        until = InstantField(
            required=False, help_text="finished before; after `since` if both are given (an "
            "empty or reversed range is 422, under details.until)")
        error_type = StrictCharField(required=False, max_length=255, **TAKEN_AS_SENT,
                                     help_text="the class name of the last error, as in a "
                                     "job's `error.type` (e.g. `ConnectionError`)")
        limit = serializers.IntegerField(required=False, min_value=1, max_value=10_000,
                                         default=10_000)
        dry_run = serializers.BooleanField(
            required=False, default=False,
            help_text="count the jobs the filter matches (`200 {\"matched\": n}`), replay "
            "nothing")

        def validate(self, attrs):
            if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
                raise serializers.ValidationError({"until": "must be after since"})
            return attrs

    @extend_schema(operation_id="jobs_bulk_retry", request=InputSerializer,
                   responses={202: inline_serializer("JobBulkRetry", {
                       "requeued": serializers.IntegerField()}),
                       200: inline_serializer("JobBulkRetryDryRun", {
                           "matched": serializers.IntegerField(
                               help_text="jobs the filter matches now"),
                           "would_requeue": serializers.IntegerField(
                               help_text="how many a replay would take now: at most `limit`"),
                           "dry_run": serializers.BooleanField()}),
                       **_errors(400, 401, 403, 422)})
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        filters = dict(serializer.validated_data)
        if filters.pop("dry_run"):
            limit = filters.pop("limit")
            matched = selectors.jobs_matching_replay(api_key=request.auth, **filters).count()
            return Response({"matched": matched, "would_requeue": min(matched, limit),
                             "dry_run": True})
        count = services.jobs_replay(api_key=request.auth, **filters)
        audit_filter(actor=actor_from_request(request), action=AuditAction.REPLAY,
                     target_type="jobs", filters=filters, count=count)
        return Response({"requeued": count}, status=status.HTTP_202_ACCEPTED)

"""The thin HTTP layer for /api/v1/bulk-operations: validate the shape, call one service or
selector, render.

A run starts from JSON (`{"operation", "args", …}`) or, for an operation that takes rows,
from CSV (`Content-Type: text/csv`, `?operation=…`): the body then goes straight from the
socket into the database (domain/bulk/inputs.py) and is never parsed by DRF.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from domain.access.audit import actor_from_request, audit_record
from domain.access.models import AuditAction, Scopes
from domain.bulk import selectors, services
from domain.bulk.models import BulkRequest, BulkRun, BulkRunStatus
from domain.bulk.registry import bulk_operations
from domain.common.fields import JsonBooleanField, NumberField, StrictCharField
from domain.common.idempotency import (
    IDEMPOTENCY_HEADER,
    REPLAYED_PARAMETER,
    accepted_or_replayed,
    idempotency_key,
)
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

_errors = error_responses
READ_SCOPES = (Scopes.BULK_READ, Scopes.BULK_WRITE)


@extend_schema_serializer(component_name="BulkRun")
class BulkRunOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    operation = serializers.CharField()
    args = serializers.JSONField()
    dry_run = serializers.BooleanField()
    status = serializers.ChoiceField(choices=BulkRunStatus.choices)
    requested = serializers.ChoiceField(
        choices=[BulkRequest.PAUSE, BulkRequest.CANCEL], allow_null=True,
        help_text="A pause or cancel asked for, taking effect at the next chunk boundary.")
    rows_matched = serializers.IntegerField(allow_null=True,
                                            help_text="Rows to visit (counted at the start).")
    rows_done = serializers.IntegerField(help_text="Rows visited so far.")
    rows_changed = serializers.IntegerField(help_text="Rows written (a dry run: rows that "
                                            "would be).")
    chunks = inline_serializer("BulkRunChunks", {
        "done": serializers.IntegerField(),
        "total": serializers.IntegerField(allow_null=True, help_text="an estimate while it "
                                          "runs: chunk sizes adapt"),
        "size": serializers.IntegerField(help_text="the next chunk's rows")})
    checkpoint = inline_serializer("BulkRunCheckpoint", {
        "last_key": serializers.CharField(allow_null=True, help_text="the last key done "
                                          "(a primary key, or a CSV run's row number)"),
        "rows_done": serializers.IntegerField()})
    elapsed_seconds = serializers.FloatField(help_text="Time spent running (pauses between "
                                             "chunks included; not time paused).")
    rate = serializers.FloatField(allow_null=True, help_text="Rows per second while running.")
    eta_seconds = serializers.FloatField(allow_null=True, help_text="Estimated time left.")
    last_error = serializers.JSONField(allow_null=True)
    result = serializers.JSONField(allow_null=True, help_text="When it ended: the event it "
                                   "published, or a dry run's would_change.")
    throttle = inline_serializer("BulkRunThrottle", {
        "adaptive": serializers.BooleanField(),
        "target_chunk_seconds": serializers.FloatField(),
        "pause_seconds": serializers.FloatField(),
        "lock_timeout_seconds": serializers.FloatField(),
        "lock_retries": serializers.IntegerField(help_text="chunks retried because rows were "
                                                 "locked by others")})
    target = serializers.CharField(allow_null=True, help_text="The rows it holds while "
                                   "queued, running or paused.")
    input_rows = serializers.IntegerField(allow_null=True, help_text="A CSV run's rows.")
    job = inline_serializer("BulkRunJob", {
        "id": serializers.UUIDField(), "status": serializers.CharField(),
        "progress": inline_serializer("BulkRunJobProgress", {
            "done": serializers.IntegerField(),
            "total": serializers.IntegerField(allow_null=True)}),
        "url": serializers.URLField()}, allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()
    url = serializers.URLField()

    def to_representation(self, run: BulkRun) -> dict:
        request = self.context["request"]
        job = run.job
        return {
            "id": str(run.pk),
            "operation": run.operation,
            "args": run.args,
            "dry_run": run.dry_run,
            "status": str(run.status),
            "requested": run.requested or None,
            "rows_matched": run.rows_matched,
            "rows_done": run.rows_done,
            "rows_changed": run.rows_changed,
            "chunks": {"done": run.chunks_done, "total": selectors.bulk_run_chunks_total(run),
                       "size": run.chunk_size},
            "checkpoint": {"last_key": run.checkpoint or None, "rows_done": run.rows_done},
            "elapsed_seconds": round(run.elapsed_seconds, 3),
            "rate": selectors.bulk_run_rate(run),
            "eta_seconds": selectors.bulk_run_eta(run),
            "last_error": run.last_error,
            "result": run.result,
            "throttle": {"adaptive": run.adaptive,
                         "target_chunk_seconds": run.target_chunk_seconds,
                         "pause_seconds": run.pause_seconds,
                         "lock_timeout_seconds": run.lock_timeout_seconds,
                         "lock_retries": run.lock_retries},
            "target": run.target,
            "input_rows": run.input_rows,
            "job": None if job is None else {
                "id": str(job.pk), "status": str(job.status),
                "progress": {"done": job.progress_done, "total": job.progress_total},
                "url": absolute_url(request, "job-detail", job.pk)},
            "created_at": iso(run.created_at),
            "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at),
            "updated_at": iso(run.updated_at),
            "url": absolute_url(request, "bulk-run-detail", run.pk),
        }


class ThrottleSerializer(serializers.Serializer):
    adaptive = JsonBooleanField(
        required=False, help_text="chunk size follows target_chunk_seconds (BULK_ADAPTIVE)")
    target_chunk_seconds = NumberField(required=False, min_value=0.01, max_value=60)
    pause_seconds = NumberField(required=False, min_value=0, max_value=60,
                                help_text="pause between chunks")
    lock_timeout_seconds = NumberField(
        required=False, min_value=0.01, max_value=60,
        help_text="how long a chunk waits for rows locked by others before it is retried")


def _throttle(data: dict) -> services.Throttle:
    throttle = data.get("throttle") or {}
    return services.Throttle(chunk_size=data.get("chunk_size"), **throttle)


class BulkRunListCreateApi(APIView):
    required_scopes = {"GET": READ_SCOPES, "POST": (Scopes.BULK_WRITE,)}
    throttle_scope = {"GET": "read", "POST": "write"}

    @extend_schema_serializer(component_name="BulkRunFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=BulkRunStatus.choices, required=False)
        operation = serializers.CharField(required=False, max_length=100, **TAKEN_AS_SENT)
        limit = serializers.IntegerField(
            required=False, min_value=1, max_value=CreatedAtCursorPagination.max_page_size,
            help_text=f"page size, {CreatedAtCursorPagination.page_size} if not given")

    @extend_schema_serializer(component_name="BulkRunInput")
    class InputSerializer(serializers.Serializer):
        operation = StrictCharField(max_length=100, trim_whitespace=False)
        args = serializers.DictField(default=dict, help_text="the operation's args (its JSON "
                                     "schema: GET /api/v1/bulk-operation-types)")
        dry_run = JsonBooleanField(default=False)
        chunk_size = serializers.IntegerField(
            required=False, min_value=1, max_value=settings.BULK_MAX_CHUNK_SIZE,
            help_text="the first chunk's rows (BULK_CHUNK_SIZE); fixed if throttle.adaptive "
            "is false")
        throttle = ThrottleSerializer(required=False)

    @extend_schema_serializer(component_name="BulkRunCsvQuery")
    class CsvQuerySerializer(serializers.Serializer):
        # Query parameters are text: DRF's own fields read them ("0.5", "true").
        adaptive = serializers.BooleanField(required=False)
        target_chunk_seconds = serializers.FloatField(required=False, min_value=0.01,
                                                      max_value=60)
        pause_seconds = serializers.FloatField(required=False, min_value=0, max_value=60)
        lock_timeout_seconds = serializers.FloatField(required=False, min_value=0.01,
                                                      max_value=60)
        operation = serializers.CharField(max_length=100, **TAKEN_AS_SENT)
        dry_run = serializers.BooleanField(default=False)
        chunk_size = serializers.IntegerField(required=False, min_value=1,
                                              max_value=settings.BULK_MAX_CHUNK_SIZE)

    @extend_schema(
        operation_id="bulk_runs_list",
        parameters=[FilterSerializer,
                    OpenApiParameter("cursor", {"type": "string", "minLength": 1,
                                                "pattern": "^[A-Za-z0-9+/]+={0,2}$"},
                                     description="from a page's `next` or `previous` link")],
        responses={200: cursor_page("BulkRunPage", BulkRunOutputSerializer(many=True)),
                   **_errors(401, 403, 422)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        runs = selectors.bulk_run_list(api_key=request.auth,
                                       status=filters.validated_data.get("status"),
                                       operation=filters.validated_data.get("operation"))
        paginator = CreatedAtCursorPagination()
        page = [services.bulk_run_settle(run=run)
                for run in paginator.paginate_queryset(runs, request, view=self)]
        data = BulkRunOutputSerializer(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        operation_id="bulk_runs_create",
        description="Start a run of a registered operation. JSON for operations that take "
        "args; `Content-Type: text/csv` with `?operation=` (and optionally `dry_run`, "
        "`chunk_size` and the throttle fields as query parameters) for operations that take "
        "rows (query parameters `operation`, `dry_run`, `chunk_size`, `adaptive`, "
        "`target_chunk_seconds`, `pause_seconds`, `lock_timeout_seconds`; with a JSON body "
        "they are not read). The CSV body is not in this schema's request bodies because "
        "OpenAPI cannot make `operation` required for one media type only. 409 "
        "`bulk_target_busy` while another run holds the same rows.",
        request={"application/json": InputSerializer},
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER,
                                     description="At most 255 characters (otherwise 422 "
                                     "invalid_idempotency_key). The same key and request "
                                     "(a CSV's body included) from the same API key answer "
                                     "the first run as it is now (200), instead of starting "
                                     "another; another request with the key is 409 "
                                     "idempotency_key_reused."),
                    REPLAYED_PARAMETER],
        responses={202: BulkRunOutputSerializer, 200: BulkRunOutputSerializer,
                   **_errors(400, 401, 403, 409, 413, 415, 422)},
    )
    def post(self, request):
        if request.content_type.split(";")[0].strip().lower() == "text/csv":
            return self._post_csv(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.bulk_run_request(
            operation=data["operation"], args=data["args"], dry_run=data["dry_run"],
            throttle=_throttle(data), api_key=request.auth,
            idempotency_key=idempotency_key(request), correlation_id=request.correlation_id)
        return self._accepted(request, result)

    def _post_csv(self, request):
        query = self.CsvQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        data = dict(query.validated_data)
        operation, dry_run = data.pop("operation"), data.pop("dry_run")
        chunk_size = data.pop("chunk_size", None)
        result = services.bulk_run_request(
            operation=operation, args={}, dry_run=dry_run,
            throttle=services.Throttle(chunk_size=chunk_size, **data),
            csv_stream=request._request,  # the raw body, read as it arrives
            api_key=request.auth, idempotency_key=idempotency_key(request),
            correlation_id=request.correlation_id)
        return self._accepted(request, result)

    @staticmethod
    def _accepted(request, result: services.StartResult) -> Response:
        body = BulkRunOutputSerializer(result.run, context={"request": request}).data
        return accepted_or_replayed(body, created=result.created)


class BulkRunInputSchema(OpenApiSerializerExtension):
    """The JSON body in the schema as the server checks it: `operation` is a registered
    operation that takes args (not CSV) and `args` follow its schema (otherwise 422
    unknown_operation / invalid_args / csv_required): one branch per operation, read from the
    registry when the schema is made (as POST /api/v1/jobs does for job kinds)."""

    target_class = BulkRunListCreateApi.InputSerializer

    def map_serializer(self, auto_schema, direction):
        base = auto_schema._map_serializer(self.target_class, direction, bypass_extensions=True)
        branches = {
            component_name(op.name, "BulkRunInput"): {
                **base, "description": op.description,
                "properties": {**base["properties"],
                               "operation": {"type": "string", "enum": [op.name]},
                               "args": openapi_schema(op.args_schema)},
                "required": ["operation", "args"]}
            for op in bulk_operations() if not op.accepts_csv}
        return one_of_components(auto_schema, branches)


class BulkRunDetailApi(APIView):
    required_scopes = {"GET": READ_SCOPES}
    throttle_scope = "read"

    @extend_schema(operation_id="bulk_runs_retrieve",
                   responses={200: BulkRunOutputSerializer, **_errors(401, 403, 404)})
    def get(self, request, run_id):
        run = services.bulk_run_settle(
            run=selectors.bulk_run_get(run_id=run_id, api_key=request.auth))
        return Response(BulkRunOutputSerializer(run, context={"request": request}).data)


def _steer_api(action: str, steer, description: str) -> type[APIView]:
    """POST /api/v1/bulk-operations/{id}/<action>: one service call, 202 with the run."""

    class SteerApi(APIView):
        required_scopes = {"POST": (Scopes.BULK_WRITE,)}
        throttle_scope = "write"

        @extend_schema(operation_id=f"bulk_runs_{action}", request=None,
                       responses={202: BulkRunOutputSerializer,
                                  **_errors(401, 403, 404, 409)},
                       description=description)
        def post(self, request, run_id):
            run = steer(run=selectors.bulk_run_get(run_id=run_id, api_key=request.auth))
            audit_record(actor=actor_from_request(request), action=AuditAction(action),
                         target_type="bulk_run", target=run.pk)
            return Response(BulkRunOutputSerializer(run, context={"request": request}).data,
                            status=status.HTTP_202_ACCEPTED)

    SteerApi.__name__ = SteerApi.__qualname__ = f"BulkRun{action.capitalize()}Api"
    return SteerApi


BulkRunPauseApi = _steer_api(
    "pause", services.bulk_run_pause,
    "Pause at the next chunk boundary (at once if no worker has the run's job now). "
    "`requested` says a pause is on its way.")
BulkRunResumeApi = _steer_api(
    "resume", services.bulk_run_resume,
    "Continue a paused (or failed) run from its checkpoint with a new job.")
BulkRunCancelApi = _steer_api(
    "cancel", services.bulk_run_cancel,
    "Cancel at the next chunk boundary (at once if paused, failed, or no worker has the "
    "run's job now). Committed chunks stay committed.")


class BulkOperationTypesApi(APIView):
    required_scopes = {"GET": READ_SCOPES}
    throttle_scope = "read"

    @extend_schema(operation_id="bulk_operation_types_list", responses={
        200: inline_serializer("BulkOperationType", {
            "name": serializers.CharField(), "description": serializers.CharField(),
            "args_schema": serializers.JSONField(),
            "csv_columns": serializers.ListField(child=serializers.CharField(),
                                                 allow_null=True),
            "event_type": serializers.CharField(),
            "example_args": serializers.JSONField()}, many=True),
        **_errors(401, 403)})
    def get(self, request):
        return Response([{
            "name": op.name, "description": op.description, "args_schema": op.args_schema,
            "csv_columns": list(op.header) if op.accepts_csv else None,
            "event_type": op.event_type, "example_args": op.example_args,
        } for op in bulk_operations()])

"""/api/v1/schedules: what runs when, what ran, and the operator's steering."""

from __future__ import annotations

from django.urls import reverse
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
from domain.common.errors import RETRY_AFTER_SECONDS, error_body
from domain.common.openapi import cursor_page, error_responses
from domain.common.pagination import CreatedAtCursorPagination
from domain.common.rendering import iso
from scheduler import selectors, services
from scheduler.models import RunOutcome, RunTrigger, ScheduleRun, SkipReason

READ_SCOPES = (Scopes.SCHEDULES_READ, Scopes.SCHEDULES_WRITE)
_errors = error_responses


class SlotCursorPagination(CreatedAtCursorPagination):
    ordering = ("-slot", "-id")


def _run(run: ScheduleRun | None) -> dict | None:
    if run is None:
        return None
    return {"slot": iso(run.slot), "trigger": str(run.trigger), "outcome": str(run.outcome),
            "reason": run.reason or None, "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at), "duration_ms": run.duration_ms,
            "worker": run.worker or None, "task_id": run.task_id or None,
            "result": run.result, "error": run.error or None}


@extend_schema_serializer(component_name="ScheduleRun")
class ScheduleRunSerializer(serializers.Serializer):
    slot = serializers.DateTimeField(help_text="The instant the run was due (UTC); the run's "
                                     "key: one run per schedule and slot.")
    trigger = serializers.ChoiceField(choices=RunTrigger.choices)
    outcome = serializers.ChoiceField(choices=RunOutcome.choices)
    reason = serializers.ChoiceField(choices=SkipReason.choices, allow_null=True,
                                     help_text="Why a skipped slot did not run.")
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    worker = serializers.CharField(allow_null=True)
    task_id = serializers.CharField(allow_null=True)
    result = serializers.JSONField(allow_null=True, help_text="What the task returned.")
    error = serializers.CharField(allow_null=True)

    def to_representation(self, run: ScheduleRun) -> dict:
        return _run(run)


@extend_schema_serializer(component_name="Schedule")
class ScheduleSerializer(serializers.Serializer):
    name = serializers.CharField()
    task = serializers.CharField()
    description = serializers.CharField(help_text="Why it runs.")
    enabled = serializers.BooleanField(help_text="false: paused (in the admin or the API).")
    kind = serializers.ChoiceField(choices=["cron", "interval"])
    expression = serializers.CharField(help_text="Cron fields, or `every Ns`, as Beat reads "
                                       "them (an operator's edit in the admin included).")
    timezone = serializers.CharField(help_text="The zone cron fields are read in.")
    edited = serializers.BooleanField(help_text="The schedule differs from the code's "
                                      "(`manage.py sync_schedules --reset` puts it back).")
    expires_seconds = serializers.IntegerField(help_text="A message older than this is "
                                               "dropped, not run late.")
    missed = serializers.ChoiceField(choices=["skip", "run_once"], help_text="A slot Beat "
                                     "was not running for: skipped and recorded, or run once.")
    last_run = ScheduleRunSerializer(allow_null=True)
    next_run = serializers.DateTimeField(allow_null=True, help_text="The next slot; null "
                                         "while paused.")

    def to_representation(self, state: selectors.ScheduleState) -> dict:
        declaration = state.declaration
        return {"name": state.name, "task": declaration.task,
                "description": declaration.reason, "enabled": state.enabled,
                "kind": state.kind, "expression": state.expression,
                "timezone": state.timezone, "edited": state.edited,
                "expires_seconds": declaration.expires_seconds, "missed": declaration.missed,
                "last_run": _run(state.last_run), "next_run": iso(state.next_run)}


class ScheduleListApi(APIView):
    required_scopes = {"GET": READ_SCOPES}
    throttle_scope = "read"

    @extend_schema(operation_id="schedules_list",
                   responses={200: ScheduleSerializer(many=True), **_errors(401, 403)})
    def get(self, request):
        return Response(ScheduleSerializer(selectors.schedule_list(), many=True).data)


class ScheduleDetailApi(APIView):
    required_scopes = {"GET": READ_SCOPES}
    throttle_scope = "read"

    @extend_schema(operation_id="schedules_retrieve",
                   responses={200: ScheduleSerializer, **_errors(401, 403, 404)})
    def get(self, request, name):
        return Response(ScheduleSerializer(selectors.schedule_get(name)).data)


class ScheduleRunListApi(APIView):
    required_scopes = {"GET": READ_SCOPES}
    throttle_scope = "read"

    @extend_schema_serializer(component_name="ScheduleRunFilter")
    class FilterSerializer(serializers.Serializer):
        outcome = serializers.ChoiceField(choices=RunOutcome.choices, required=False)
        trigger = serializers.ChoiceField(choices=RunTrigger.choices, required=False)
        limit = serializers.IntegerField(
            required=False, min_value=1, max_value=SlotCursorPagination.max_page_size,
            help_text=f"page size, {SlotCursorPagination.page_size} if not given")

    @extend_schema(
        operation_id="schedule_runs_list",
        description="The schedule's ledger, newest slot first.",
        parameters=[FilterSerializer,
                    OpenApiParameter("cursor", {"type": "string", "minLength": 1,
                                                "pattern": "^[A-Za-z0-9+/]+={0,2}$"},
                                     description="from a page's `next` or `previous` link")],
        responses={200: cursor_page("ScheduleRunPage", ScheduleRunSerializer(many=True)),
                   **_errors(401, 403, 404, 422)})
    def get(self, request, name):
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        runs = selectors.schedule_runs(name, outcome=filters.validated_data.get("outcome"),
                                       trigger=filters.validated_data.get("trigger"))
        paginator = SlotCursorPagination()
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(ScheduleRunSerializer(page, many=True).data)


def _steer_api(action: str, steer, description: str) -> type[APIView]:
    """POST /api/v1/schedules/{name}/<action>: flip the enabled flag, 200 with the schedule."""

    class SteerApi(APIView):
        required_scopes = {"POST": (Scopes.SCHEDULES_WRITE,)}
        throttle_scope = "write"

        @extend_schema(operation_id=f"schedules_{action}", request=None,
                       description=description,
                       responses={200: ScheduleSerializer, **_errors(401, 403, 404, 409)})
        def post(self, request, name):
            state = steer(name=name)
            audit_record(actor=actor_from_request(request), action=AuditAction(action),
                         target_type="schedule", target=name)
            return Response(ScheduleSerializer(state).data)

    SteerApi.__name__ = SteerApi.__qualname__ = f"Schedule{action.capitalize()}Api"
    return SteerApi


SchedulePauseApi = _steer_api(
    "pause", services.schedule_pause,
    "Stop Beat from sending the schedule (as the admin's `enabled` switch). Slots while "
    "paused are not run and not recorded. Idempotent.")
ScheduleResumeApi = _steer_api(
    "resume", services.schedule_resume,
    "Let Beat send the schedule again from its next slot (a slot missed while paused is not "
    "run). Idempotent.")


class ScheduleRunNowApi(APIView):
    required_scopes = {"POST": (Scopes.SCHEDULES_WRITE,)}
    throttle_scope = "write"

    @extend_schema(
        operation_id="schedules_run", request=None,
        description="Send the schedule's task now, paused or not. It runs through the same "
        "ledger and overlap lock as Beat's runs: its slot is the second it was asked for "
        "(two requests in one second are one run) and its trigger is `manual`; if a run "
        "still holds the schedule it is recorded `skipped: overlap`. Follow `runs_url`.",
        responses={202: inline_serializer("ScheduleRunNow", {
            "schedule": serializers.CharField(), "slot": serializers.DateTimeField(),
            "trigger": serializers.CharField(), "task_id": serializers.CharField(),
            "runs_url": serializers.URLField()}),
            **_errors(401, 403, 404, 503)})
    def post(self, request, name):
        try:
            run = services.schedule_run_now(name=name)
        except services.BrokerUnavailable:
            body = error_body("service_unavailable", "The broker is unavailable; nothing was "
                              "sent. Retry after the seconds in Retry-After.",
                              {"unavailable": "broker"})
            return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        audit_record(actor=actor_from_request(request), action=AuditAction.RUN,
                     target_type="schedule", target=name,
                     detail={"slot": iso(run.slot), "task_id": run.task_id})
        runs_url = request.build_absolute_uri(reverse("schedule-runs", args=[name])
                                              + "?trigger=manual")
        return Response({"schedule": run.schedule, "slot": iso(run.slot),
                         "trigger": str(RunTrigger.MANUAL), "task_id": run.task_id,
                         "runs_url": runs_url}, status=status.HTTP_202_ACCEPTED)

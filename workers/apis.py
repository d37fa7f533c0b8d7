"""The API of the worker runtime: why a job is not running (`/api/v1/jobs/{id}/explain`)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from domain.access.models import Scopes
from domain.common.openapi import error_responses
from domain.common.rendering import iso
from domain.jobs.models import JobStatus
from domain.jobs.selectors import job_get
from workers.explain import Reason, job_explain

_errors = error_responses


@extend_schema_serializer(component_name="JobExplanation", examples=[
    OpenApiExample("backoff", value={
        "job": "0b9c5a1e-8f5e-4d2b-9a51-3c1f0f1f7d10", "status": "retrying",
        "reason": "backoff",
        "message": "Attempt 2 of 5 failed with TransientError: connection refused; the next "
        "attempt is at 2026-11-28 23:10:05 UTC (in 12 s).",
        "details": {"queue": "events", "next_retry_at": "2026-11-28T23:10:05Z",
                    "error": {"type": "TransientError", "message": "connection refused"},
                    "attempt": 2, "max_attempts": 5},
        "checked_at": "2026-11-28T23:09:53Z"}),
    OpenApiExample("waiting_in_queue", value={
        "job": "0b9c5a1e-8f5e-4d2b-9a51-3c1f0f1f7d10", "status": "queued",
        "reason": "waiting_in_queue",
        "message": "It waits in queue 'bulk' (3 messages in it) behind 2 jobs sent before it; "
        "it was sent at 2026-11-28 23:09:41 UTC (12 s ago) and the oldest due job of the "
        "queue has waited 40 s.",
        "details": {"queue": "bulk", "depth": 3, "ahead": 2, "ahead_exact": True,
                    "position": 3, "oldest_age_seconds": 40.2,
                    "enqueued_at": "2026-11-28T23:09:41Z", "waiting_seconds": 12.0},
        "checked_at": "2026-11-28T23:09:53Z"}),
])
class JobExplanationSerializer(serializers.Serializer):
    job = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    reason = serializers.ChoiceField(
        choices=[reason.value for reason in Reason],
        help_text="Why the job is (not) running; the first of these that holds, in this "
        "order (README \"Why isn't this job running?\").")
    message = serializers.CharField(help_text="One sentence for a human, with what to do.")
    details = serializers.DictField(
        help_text="The facts behind the reason, machine-readable; which keys depends on the "
        "reason (README). Always `queue` (null for a kind no longer registered); times are "
        "ISO 8601 UTC; `depth` is null when the broker does not answer.")
    checked_at = serializers.DateTimeField()


class JobExplainApi(APIView):
    """Why isn't this job running? Readable by whoever may read the job (a key its own jobs,
    `admin` every job; 404 otherwise). Answers from the database when the broker is down."""

    required_scopes = {"GET": (Scopes.JOBS_READ,)}
    throttle_scope = "read"

    @extend_schema(operation_id="jobs_explain",
                   responses={200: JobExplanationSerializer, **_errors(401, 403, 404)})
    def get(self, request, job_id):
        job = job_get(job_id=job_id, api_key=request.auth)
        explanation = job_explain(job=job)
        return Response({"job": str(job.pk), "status": str(job.status),
                         "reason": explanation.reason, "message": explanation.message,
                         "details": explanation.details,
                         "checked_at": iso(explanation.checked_at)})

"""The worker runtime's API. /api/v1/queues: each queue's pause, depth, waiting jobs and
consumers; pause and resume. /api/v1/jobs/{id}/explain: why a job is not running
(workers/explain.py).

Reads need the database; the depth is the broker's (null when it does not answer, not a 503)
and the consumers the workers' presence in Redis (null when it does not answer). Pause and
resume need only the database: the broadcast that tells the workers at once is best effort.
"""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from domain.access.audit import actor_from_request
from domain.access.models import Scopes
from domain.common.fields import StrictCharField
from domain.common.openapi import error_responses
from domain.common.rendering import iso
from domain.jobs import services
from domain.jobs.models import JobStatus
from domain.jobs.selectors import job_get
from workers import selectors
from workers.explain import Reason, job_explain

_errors = error_responses
ADMIN_SCOPES = (Scopes.ADMIN,)
REASON_MAX_LENGTH = 500

QUEUE_NAME = OpenApiParameter("name", str, OpenApiParameter.PATH, enum=selectors.queue_names(),
                              description="a queue of workers/queues.py")


def _queue(state: selectors.QueueState) -> dict:
    return {"name": state.name, "paused": state.paused, "paused_at": iso(state.paused_at),
            "paused_by": state.paused_by, "reason": state.reason, "depth": state.depth,
            "waiting": state.waiting, "oldest_age_seconds": state.oldest_age_seconds,
            "consumers": state.consumers}


@extend_schema_serializer(component_name="Queue")
class QueueSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=selectors.queue_names())
    paused = serializers.BooleanField(help_text="Paused: workers do not consume it, and its "
                                      "jobs stay `queued` with no attempt used.")
    paused_at = serializers.DateTimeField(allow_null=True)
    paused_by = serializers.CharField(allow_null=True, help_text="Who paused it: an admin "
                                      "user, an API key (name and prefix) or a command's "
                                      "OS user.")
    reason = serializers.CharField(allow_null=True)
    depth = serializers.IntegerField(allow_null=True, help_text="Messages waiting on the "
                                     "broker; null when the broker does not answer.")
    waiting = serializers.IntegerField(help_text="Jobs of the queue's kinds due and waiting "
                                       "for a worker (queued, or retrying with the retry due).")
    oldest_age_seconds = serializers.FloatField(allow_null=True, help_text="How long the "
                                                "oldest of them has been due; null: none.")
    consumers = serializers.ListField(child=serializers.CharField(), allow_null=True,
                                      help_text="Workers seen consuming it in the last "
                                      "WORKER_SEEN_SECONDS (none while paused); null when "
                                      "their presence (Redis) does not answer.")

    def to_representation(self, state: selectors.QueueState) -> dict:
        return _queue(state)


class QueueListApi(APIView):
    required_scopes = {"GET": ADMIN_SCOPES}
    throttle_scope = "read"

    @extend_schema(operation_id="queues_list",
                   responses={200: QueueSerializer(many=True), **_errors(401, 403)})
    def get(self, request):
        return Response([_queue(state) for state in selectors.queue_list()])


class QueueDetailApi(APIView):
    required_scopes = {"GET": ADMIN_SCOPES}
    throttle_scope = "read"

    @extend_schema(operation_id="queues_retrieve", parameters=[QUEUE_NAME],
                   responses={200: QueueSerializer, **_errors(401, 403, 404)})
    def get(self, request, name):
        return Response(_queue(selectors.queue_get(name)))


@extend_schema_serializer(component_name="QueuePauseInput")
class PauseInputSerializer(serializers.Serializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=REASON_MAX_LENGTH,
                             trim_whitespace=False, help_text="Why, for the other operators "
                             "(shown with the queue and in the audit log).")


class QueuePauseApi(APIView):
    required_scopes = {"POST": ADMIN_SCOPES}
    throttle_scope = "write"

    @extend_schema(
        operation_id="queues_pause", parameters=[QUEUE_NAME], request=PauseInputSerializer,
        description="Pause the queue: workers stop consuming it (at once, and after any "
        "restart: the pause is a database row), a message a worker still takes is given back "
        "unclaimed, and the outbox relay holds its jobs. Its jobs stay `queued`, no attempt "
        "used. Idempotent (a second pause keeps the first one's time, author and reason). "
        "Recorded in the audit log.",
        responses={200: QueueSerializer, **_errors(400, 401, 403, 404, 413, 422)})
    def post(self, request, name):
        selectors.queue_declared(name)
        serializer = PauseInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.queue_pause(queue=name, actor=actor_from_request(request),
                             reason=serializer.validated_data.get("reason", ""))
        return Response(_queue(selectors.queue_get(name)))


class QueueResumeApi(APIView):
    required_scopes = {"POST": ADMIN_SCOPES}
    throttle_scope = "write"

    @extend_schema(
        operation_id="queues_resume", parameters=[QUEUE_NAME], request=None,
        description="Resume the queue: workers started with it consume it again at once; jobs "
        "the relay held are sent by its next run (within seconds). Idempotent. Recorded in "
        "the audit log.",
        responses={200: QueueSerializer, **_errors(401, 403, 404)})
    def post(self, request, name):
        selectors.queue_declared(name)
        services.queue_resume(queue=name, actor=actor_from_request(request))
        return Response(_queue(selectors.queue_get(name)))


# --- Why isn't this job running? ------------------------------------------------------------

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
        "message": "It waits in queue 'bulk' (3 messages in it), behind 2 jobs sent before it; "
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

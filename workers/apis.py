"""/api/v1/queues: each queue's pause, depth, waiting jobs and consumers; pause and resume.

Reads need the database; the depth is the broker's (null when it does not answer, not a 503)
and the consumers the workers' presence in Redis (null when it does not answer). Pause and
resume need only the database: the broadcast that tells the workers at once is best effort.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from domain.access.audit import actor_from_request
from domain.access.models import Scopes
from domain.common.fields import StrictCharField
from domain.common.openapi import error_responses
from domain.common.rendering import iso
from domain.jobs import services
from workers import selectors

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

"""The project's URLs plus the single-publish baselines, served by the same gunicorn
configuration and middleware as the API:

- `/bench/baseline`: the minimal Django JSON view (no auth, no database).
- `/bench/naive`: the naive recipe, a plain Django view doing `Event.objects.create` and then
  `.delay()` of a no-op task on the project's Celery app (no auth, no throttle, no DRF, no
  validation beyond json.loads, no idempotency).

The naive task goes to a queue no worker consumes (`bench_naive`); its messages wait there
until the suite flushes Redis between scenarios.
"""

import json

from celery import shared_task
from django.http import JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from kombu import Exchange, Queue

from config.urls import urlpatterns as project_urlpatterns
from domain.events.models import Event

# Declared like the project's queues (workers/queues.py): the default exchange, routed by name.
NAIVE_QUEUE = Queue("bench_naive", Exchange("", type="direct"), routing_key="bench_naive")


@shared_task(name="bench.naive_noop", queue=NAIVE_QUEUE)
def naive_noop(event_id: str) -> None:
    return None


@csrf_exempt
def baseline(request):
    return JsonResponse({"ok": True})


@csrf_exempt
def naive(request):
    body = json.loads(request.body)
    now = timezone.now()
    event = Event.objects.create(type=body["type"], payload=body.get("payload", {}),
                                 occurred_at=now, created_at=now, correlation_id="")
    naive_noop.delay(str(event.pk))
    return JsonResponse({"id": str(event.pk)}, status=202)


urlpatterns = [path("bench/baseline", baseline), path("bench/naive", naive),
               *project_urlpatterns]

"""The project's URLs plus `/bench/baseline`: the minimal Django JSON view the publish figure is
compared with (same gunicorn configuration, same middleware, no auth, no database)."""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as project_urlpatterns


@csrf_exempt
def baseline(request):
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/baseline", baseline), *project_urlpatterns]

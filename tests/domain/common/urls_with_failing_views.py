"""The project's URLconf plus two API views that fail with a bug, for the 500 tests, and plain
Django views that query the database, for the 503 tests (used through `@pytest.mark.urls`)."""

from django.http import JsonResponse
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from config.urls import handler404, handler500
from config.urls import urlpatterns as project_urlpatterns
from domain.access.models import ApiKey

__all__ = ["handler404", "handler500", "urlpatterns"]


class Bug(RuntimeError):
    """What the failing views raise: an error no handler knows."""


def failing_django_view(request):
    raise Bug("a bug in a plain Django view")


def counting_django_view(request):
    """A view outside DRF that needs the database (as the admin's do)."""
    return JsonResponse({"keys": ApiKey.objects.count()})


class FailingApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def get(self, request):
        raise Bug("a bug in a DRF view")


# Before the project's routes, whose /api/ catch-all would answer these paths with a 404.
urlpatterns = [
    path("api/v1/failing/django", failing_django_view),
    path("api/v1/failing/drf", FailingApi.as_view()),
    path("api/v1/counting/django", counting_django_view),
    path("counting/django", counting_django_view),
    *project_urlpatterns,
]

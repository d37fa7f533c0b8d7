from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from domain.common import health
from domain.common.errors import json_not_found
from domain.common.metrics_endpoint import metrics
from scheduler.dashboard.views import operator_dashboard

# The admin's index links the operator dashboard (scheduler/templates/admin/scheduler/).
admin.site.index_template = "admin/scheduler/index.html"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus (domain/common/metrics_endpoint.py; README "Metrics"). Flower keeps its own
    # /metrics on its own port, for Celery's task events.
    path("metrics", metrics, name="metrics"),
    # Before admin/: the admin's catch-all would answer this path with its own 404. admin_view
    # sends anyone not logged in as staff to the admin's login page; the view checks the role.
    path("admin/dashboard/", admin.site.admin_view(operator_dashboard),
         name="operator-dashboard"),
    path("admin/", admin.site.urls),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include("domain.events.urls")),
    # The worker runtime's: /queues, and /jobs/{id}/explain, before domain/jobs (it needs queue
    # and feature facts the jobs app sits below).
    path("api/v1/", include("workers.urls")),
    path("api/v1/", include("domain.jobs.urls")),
    path("api/v1/", include("domain.catalog.urls")),
    path("api/v1/", include("domain.notifications.urls")),
    path("api/v1/", include("domain.orders.urls")),
    path("api/v1/", include("domain.bulk.urls")),
    path("api/v1/", include("scheduler.urls")),
    # Last: any other path under /api/ (and /api itself), for any method, is the JSON 404,
    # with DEBUG on too (handler404 only answers with DEBUG off). Matching here also keeps
    # CommonMiddleware's APPEND_SLASH from redirecting /api/... paths. CSRF-exempt so a POST
    # gets the 404 and not a CSRF 403.
    re_path(r"^api(?:/|$)", csrf_exempt(json_not_found), name="api-not-found"),
]

handler404 = "domain.common.errors.json_not_found"
handler500 = "domain.common.errors.json_server_error"

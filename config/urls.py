from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from domain.common import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include("domain.events.urls")),
    path("api/v1/", include("domain.jobs.urls")),
    path("api/v1/", include("domain.catalog.urls")),
]

handler404 = "domain.common.errors.json_not_found"
handler500 = "domain.common.errors.json_server_error"

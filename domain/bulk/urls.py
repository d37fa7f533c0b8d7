from django.urls import path

from domain.bulk import apis

urlpatterns = [
    path("bulk-operations", apis.BulkRunListCreateApi.as_view(), name="bulk-run-list"),
    path("bulk-operations/<uuid:run_id>", apis.BulkRunDetailApi.as_view(),
         name="bulk-run-detail"),
    path("bulk-operations/<uuid:run_id>/pause", apis.BulkRunPauseApi.as_view(),
         name="bulk-run-pause"),
    path("bulk-operations/<uuid:run_id>/resume", apis.BulkRunResumeApi.as_view(),
         name="bulk-run-resume"),
    path("bulk-operations/<uuid:run_id>/cancel", apis.BulkRunCancelApi.as_view(),
         name="bulk-run-cancel"),
    path("bulk-operation-types", apis.BulkOperationTypesApi.as_view(),
         name="bulk-operation-types"),
]

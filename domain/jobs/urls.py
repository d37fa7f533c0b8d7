from django.urls import path

from domain.jobs import apis

urlpatterns = [
    path("jobs", apis.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>", apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/retry", apis.JobBulkRetryApi.as_view(), name="job-bulk-retry"),
    path("jobs/<uuid:job_id>/attempts", apis.JobAttemptListApi.as_view(), name="job-attempts"),
    path("jobs/<uuid:job_id>/retry", apis.JobRetryApi.as_view(), name="job-retry"),
    path("jobs/<uuid:job_id>/cancel", apis.JobCancelApi.as_view(), name="job-cancel"),
]

from django.urls import path

from workers import apis

urlpatterns = [
    path("jobs/<uuid:job_id>/explain", apis.JobExplainApi.as_view(), name="job-explain"),
]

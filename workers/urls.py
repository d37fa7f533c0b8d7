from django.urls import path

from workers import apis

# Queue names are workers/queues.Queues' values: lowercase letters.
urlpatterns = [
    path("queues", apis.QueueListApi.as_view(), name="queue-list"),
    path("queues/<slug:name>", apis.QueueDetailApi.as_view(), name="queue-detail"),
    path("queues/<slug:name>/pause", apis.QueuePauseApi.as_view(), name="queue-pause"),
    path("queues/<slug:name>/resume", apis.QueueResumeApi.as_view(), name="queue-resume"),
    path("jobs/<uuid:job_id>/explain", apis.JobExplainApi.as_view(), name="job-explain"),
]

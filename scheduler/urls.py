from django.urls import path

from scheduler import apis

# Schedule names are the code's (scheduler/schedules.py): letters, digits and hyphens.
urlpatterns = [
    path("schedules", apis.ScheduleListApi.as_view(), name="schedule-list"),
    path("schedules/<slug:name>", apis.ScheduleDetailApi.as_view(), name="schedule-detail"),
    path("schedules/<slug:name>/runs", apis.ScheduleRunListApi.as_view(), name="schedule-runs"),
    path("schedules/<slug:name>/pause", apis.SchedulePauseApi.as_view(),
         name="schedule-pause"),
    path("schedules/<slug:name>/resume", apis.ScheduleResumeApi.as_view(),
         name="schedule-resume"),
    path("schedules/<slug:name>/run", apis.ScheduleRunNowApi.as_view(), name="schedule-run"),
]

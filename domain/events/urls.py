from django.urls import path

from domain.events import apis

urlpatterns = [
    path("event-types", apis.EventTypeListApi.as_view(), name="event-type-list"),
    path("events", apis.EventPublishApi.as_view(), name="event-publish"),
    path("events/batch", apis.EventBatchPublishApi.as_view(), name="event-batch-publish"),
    path("events/<uuid:event_id>", apis.EventDetailApi.as_view(), name="event-detail"),
]

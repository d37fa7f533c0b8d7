from django.urls import path

from domain.notifications import apis

urlpatterns = [
    path("webhook-endpoints", apis.EndpointListCreateApi.as_view(),
         name="webhook-endpoint-list"),
    path("webhook-endpoints/<uuid:endpoint_id>", apis.EndpointDetailApi.as_view(),
         name="webhook-endpoint-detail"),
    path("webhook-endpoints/<uuid:endpoint_id>/rotate-secret",
         apis.EndpointRotateSecretApi.as_view(), name="webhook-endpoint-rotate-secret"),
    path("webhook-endpoints/<uuid:endpoint_id>/recover", apis.EndpointRecoverApi.as_view(),
         name="webhook-endpoint-recover"),
    path("webhook-endpoints/<uuid:endpoint_id>/test", apis.EndpointTestApi.as_view(),
         name="webhook-endpoint-test"),
    path("deliveries", apis.DeliveryListApi.as_view(), name="delivery-list"),
    path("deliveries/<uuid:delivery_id>", apis.DeliveryDetailApi.as_view(),
         name="delivery-detail"),
    path("deliveries/<uuid:delivery_id>/attempts", apis.DeliveryAttemptListApi.as_view(),
         name="delivery-attempts"),
]

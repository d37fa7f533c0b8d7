from django.urls import path

from domain.notifications import apis, notification_apis

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
    # Notifications to people (email, in-app): notification_apis.py.
    path("notification-templates", notification_apis.TemplateListApi.as_view(),
         name="notification-template-list"),
    path("notification-categories", notification_apis.CategoryListApi.as_view(),
         name="notification-category-list"),
    path("notifications", notification_apis.NotificationListSendApi.as_view(),
         name="notification-list"),
    path("notifications/<uuid:notification_id>", notification_apis.NotificationDetailApi
         .as_view(), name="notification-detail"),
    path("inbox/<str:recipient_id>", notification_apis.InboxApi.as_view(), name="inbox"),
    path("inbox/<str:recipient_id>/items/<uuid:item_id>/read",
         notification_apis.InboxItemReadApi.as_view(), name="inbox-item-read"),
    path("inbox/<str:recipient_id>/items/<uuid:item_id>/unread",
         notification_apis.InboxItemUnreadApi.as_view(), name="inbox-item-unread"),
    path("inbox/<str:recipient_id>/items/<uuid:item_id>/archive",
         notification_apis.InboxItemArchiveApi.as_view(), name="inbox-item-archive"),
    path("inbox/<str:recipient_id>/read-all", notification_apis.InboxReadAllApi.as_view(),
         name="inbox-read-all"),
    path("recipients/<str:recipient_id>/preferences",
         notification_apis.PreferencesApi.as_view(), name="recipient-preferences"),
    path("unsubscribe/<str:token>", notification_apis.UnsubscribeApi.as_view(),
         name="unsubscribe"),
]

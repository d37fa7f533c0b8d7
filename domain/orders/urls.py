from django.urls import path

from domain.orders import apis

urlpatterns = [
    path("orders/<uuid:order_id>", apis.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<uuid:order_id>/ship", apis.OrderShipApi.as_view(), name="order-ship"),
]

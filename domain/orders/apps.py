from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "domain.orders"
    label = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        from domain.orders import (  # noqa: F401 - registers them
            event_types,
            notification_types,
            notifiers,
        )

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "domain.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from domain.events.registry import register_subscriber
        from domain.notifications import (  # noqa: F401 - registers them
            event_types,
            kinds,
            metrics,
            notification_types,
        )
        from domain.notifications.subscriptions import webhook_handlers

        # Events of a type some webhook endpoint subscribes to get a fan-out job.
        register_subscriber(webhook_handlers)

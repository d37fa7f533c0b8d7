from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    label = "workers"
    verbose_name = "Worker runtime"

    def ready(self) -> None:
        from workers import (  # noqa: F401 - connect the Celery signal hooks, declare metrics
            metrics,
            signals,
        )

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    label = "workers"
    verbose_name = "Worker runtime"

    def ready(self) -> None:
        from workers import signals  # noqa: F401 - connects the Celery signal hooks

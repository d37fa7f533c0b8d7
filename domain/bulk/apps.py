from django.apps import AppConfig


class BulkConfig(AppConfig):
    name = "domain.bulk"
    label = "bulk"
    verbose_name = "Bulk updates"

    def ready(self) -> None:
        from domain.bulk import metrics  # noqa: F401 - declares them for GET /metrics

from django.apps import AppConfig


class BulkConfig(AppConfig):
    name = "domain.bulk"
    label = "bulk"
    verbose_name = "Bulk updates"

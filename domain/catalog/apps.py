from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "domain.catalog"
    label = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from domain.catalog import (  # noqa: F401 - registers them
            bulk_operations,
            event_types,
        )

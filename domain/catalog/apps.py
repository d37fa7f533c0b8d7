from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "domain.catalog"
    label = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from domain.catalog import event_types  # noqa: F401 - registers product.updated

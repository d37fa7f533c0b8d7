from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "domain.customers"
    label = "customers"
    verbose_name = "Customers"

    def ready(self) -> None:
        from domain.customers import (  # noqa: F401 - registers them
            bulk_operations,
            event_types,
        )

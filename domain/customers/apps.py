from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "domain.customers"
    label = "customers"
    verbose_name = "Customers"

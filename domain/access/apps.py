from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "domain.access"
    label = "access"
    verbose_name = "API access"

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "domain.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from domain.jobs import (
            kinds,  # noqa: F401 - registers the built-in job kinds
            metrics,  # noqa: F401 - declares them for GET /metrics
        )

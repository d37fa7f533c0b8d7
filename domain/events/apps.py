from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "domain.events"
    label = "events"
    verbose_name = "Events and jobs"

    def ready(self) -> None:
        from domain.events import kinds  # noqa: F401 - registers the built-in job kinds

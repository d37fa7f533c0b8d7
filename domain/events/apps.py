from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "domain.events"
    label = "events"
    verbose_name = "Events"

    def ready(self) -> None:
        from domain.events import (
            event_types,  # noqa: F401 - registers demo.ping
            metrics,  # noqa: F401 - declares them for GET /metrics
        )
        from domain.events.rollup import EventRollup
        from domain.jobs.hooks import install_hooks

        # Jobs tell their events what happened through this (domain/jobs/hooks.py).
        install_hooks(EventRollup())

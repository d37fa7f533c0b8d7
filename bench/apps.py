from django.apps import AppConfig


class BenchConfig(AppConfig):
    """Installed by bench/settings.py only (the suite's gunicorn, worker and own process);
    the product's settings never install it."""

    name = "bench"
    label = "bench"
    verbose_name = "Benchmark suite"

    def ready(self) -> None:
        # bench.solo: a job kind and its event type; bench.webhook: an event type for webhooks.
        from bench import solo, webhook_event  # noqa: F401 - registers them

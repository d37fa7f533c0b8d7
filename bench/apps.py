from django.apps import AppConfig


class BenchConfig(AppConfig):
    """Installed by bench/settings.py only (the suite's gunicorn, worker and own process);
    the product's settings never install it."""

    name = "bench"
    label = "bench"
    verbose_name = "Benchmark suite"

    def ready(self) -> None:
        from bench import solo  # noqa: F401 - registers the bench.solo job kind and event type

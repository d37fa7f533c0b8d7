from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    label = "workers"
    verbose_name = "Worker runtime"

    def ready(self) -> None:
        from domain.jobs.explainer import install_explainer
        from workers import signals  # noqa: F401 - connects the Celery signal hooks
        from workers.explain import WorkersExplainer

        # The admin's job page says why a job is not running through this
        # (domain/jobs/explainer.py).
        install_explainer(WorkersExplainer())

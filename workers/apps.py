from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    label = "workers"
    verbose_name = "Worker runtime"

    def ready(self) -> None:
        from domain.common.health import register_readiness_check
        from domain.jobs.explainer import install_explainer
        from domain.jobs.routing import install_queue_listener
        from workers import (  # noqa: F401 - signals: the Celery signal hooks; metrics: declared
            metrics,
            presence,
            signals,
        )
        from workers.explain import WorkersExplainer
        from workers.steering import broadcast_queue_change  # also registers its control command

        # A pause or resume reaches the running workers at once (workers/steering.py).
        install_queue_listener(broadcast_queue_change)
        # /readyz names the queues no worker was seen consuming (workers/presence.py).
        register_readiness_check("queues", presence.queues_readiness)
        # The admin's job page says why a job is not running through this
        # (domain/jobs/explainer.py).
        install_explainer(WorkersExplainer())

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SchedulerConfig(AppConfig):
    name = "scheduler"
    label = "scheduler"
    verbose_name = "Scheduled maintenance"

    def ready(self) -> None:
        # After every `migrate`, the schedules declared in code are in django-celery-beat's
        # tables (operators' edits kept), so a deploy never runs old schedules.
        post_migrate.connect(_sync_after_migrate, sender=self,
                             dispatch_uid="scheduler.sync_after_migrate")
        # The operator roles' groups, likewise (scheduler/dashboard/roles.py). Connected after
        # auth's own receiver, so the permissions exist by then.
        post_migrate.connect(_roles_after_migrate, sender=self,
                             dispatch_uid="scheduler.roles_after_migrate")
        from scheduler import signals  # noqa: F401 — connects the expired-slot recorder


def _sync_after_migrate(sender, using="default", plan=None, **kwargs) -> None:
    from scheduler.sync import schedules_sync

    if using == "default":  # the one database the schedules live in
        schedules_sync()


def _roles_after_migrate(sender, using="default", plan=None, **kwargs) -> None:
    from scheduler.dashboard.roles import roles_sync

    if using == "default":
        roles_sync()

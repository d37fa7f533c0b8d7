"""The run ledger in the admin: read-only, newest first, filterable by schedule and outcome.
Pausing and editing schedules is django-celery-beat's "Periodic tasks" page, registered here
again so that its actions are written to the audit log."""

from django.contrib import admin
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from domain.access.audit import (
    LISTED_IDS,
    actor_from_request,
    audit_admin_action,
    audit_record,
)
from domain.access.models import AuditAction
from scheduler.models import ScheduleRun
from scheduler.schedules import schedule_name

admin.site.unregister(PeriodicTask)


@admin.register(ScheduleRun)
class ScheduleRunAdmin(admin.ModelAdmin):
    list_display = ("schedule", "slot", "trigger", "outcome", "reason", "duration_ms", "worker")
    list_filter = ("schedule", "outcome", "reason", "trigger")
    search_fields = ("schedule", "task_id", "worker")
    date_hierarchy = "slot"
    ordering = ("-slot", "-id")
    show_full_result_count = False  # COUNT(*) over a ledger of millions on every page

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- django-celery-beat's schedule page, its levers recorded in the audit log ---------------

@admin.register(PeriodicTask)
class AuditedPeriodicTaskAdmin(PeriodicTaskAdmin):
    """django-celery-beat's own page for the schedules, as it is, except that every lever on
    it writes the audit log: enable (resume), disable (pause), toggle (a pause for those that
    were on, a resume for those that were off), run (run now), and the `enabled` switch of
    the edit form. Each counts the schedules it changed; the entry lists their names."""

    @admin.action(description=PeriodicTaskAdmin.enable_tasks.short_description,
                  permissions=["change"])
    def enable_tasks(self, request, queryset):
        names, changed = _names(queryset), queryset.filter(enabled=False).count()
        super().enable_tasks(request, queryset)
        _audit(request, AuditAction.RESUME, changed, names)

    @admin.action(description=PeriodicTaskAdmin.disable_tasks.short_description,
                  permissions=["change"])
    def disable_tasks(self, request, queryset):
        names, changed = _names(queryset), queryset.filter(enabled=True).count()
        super().disable_tasks(request, queryset)
        _audit(request, AuditAction.PAUSE, changed, names)

    @admin.action(description=PeriodicTaskAdmin.toggle_tasks.short_description,
                  permissions=["change"])
    def toggle_tasks(self, request, queryset):
        pausing = _names(queryset.filter(enabled=True))
        resuming = _names(queryset.filter(enabled=False))
        super().toggle_tasks(request, queryset)
        for action, names in ((AuditAction.PAUSE, pausing), (AuditAction.RESUME, resuming)):
            if names:
                _audit(request, action, len(names), names)

    @admin.action(description=PeriodicTaskAdmin.run_tasks.short_description, permissions=["change"])
    def run_tasks(self, request, queryset):
        tasks = list(queryset.values_list("name", "task"))
        super().run_tasks(request, queryset)
        # It sends nothing if one of the tasks is unknown (and says so); the task registry is
        # loaded by then.
        if tasks and all(self.celery_app.tasks.get(task) for _, task in tasks):
            _audit(request, AuditAction.RUN, len(tasks), [schedule_name(n) for n, _ in tasks])

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if change and "enabled" in form.changed_data:
            audit_record(actor=actor_from_request(request),
                         action=AuditAction.RESUME if obj.enabled else AuditAction.PAUSE,
                         target_type="schedule", target=schedule_name(obj.name))


def _names(queryset) -> list[str]:
    return [schedule_name(name) for name in queryset.values_list("name", flat=True)]


def _audit(request, action: str, count: int, names: list[str]) -> None:
    audit_admin_action(request, action=action, target_type="schedules", count=count,
                       detail={"names": names[:LISTED_IDS]})

"""The run ledger in the admin: read-only, newest first, filterable by schedule and outcome.
Pausing and editing schedules is django-celery-beat's "Periodic tasks" page."""

from django.contrib import admin

from scheduler.models import ScheduleRun


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

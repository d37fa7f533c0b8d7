from django.contrib import admin

from domain.events.models import Event
from domain.jobs.models import Job


class JobInline(admin.TabularInline):
    model = Job
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("id", "kind", "handler", "status", "attempts", "max_attempts", "finished_at")
    readonly_fields = fields


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "status", "created_at", "dispatched_at", "completed_at",
                    "api_key")
    list_filter = ("status", "type", "created_at")
    search_fields = ("=id", "type", "idempotency_key", "=correlation_id")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Event._meta.fields]
    inlines = [JobInline]
    list_select_related = ("api_key",)

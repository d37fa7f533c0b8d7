from django.contrib import admin

from domain.events.models import Event, Job, JobAttempt


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


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    fields = ("number", "outcome", "started_at", "finished_at", "error_type", "error_message",
              "worker")
    readonly_fields = fields


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "attempts", "max_attempts", "created_at",
                    "finished_at", "next_retry_at", "event")
    list_filter = ("status", "kind", "created_at")
    search_fields = ("=id", "=event__id", "kind", "handler", "=correlation_id")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [JobAttemptInline]
    list_select_related = ("event",)


@admin.register(JobAttempt)
class JobAttemptAdmin(admin.ModelAdmin):
    list_display = ("job", "number", "outcome", "error_type", "worker", "finished_at")
    list_filter = ("outcome",)
    search_fields = ("=job__id", "error_type", "error_message")
    readonly_fields = [f.name for f in JobAttempt._meta.fields]

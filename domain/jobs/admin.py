import uuid

from django.contrib import admin, messages

from domain.common.errors import Conflict
from domain.jobs.models import Job, JobAttempt
from domain.jobs.services import job_cancel, job_replay


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    fields = ("run", "number", "outcome", "started_at", "finished_at", "error_type",
              "error_message", "worker")
    readonly_fields = fields

    def get_queryset(self, request):
        # Run by run, as the API lists them: a replay's attempts after the earlier run's.
        return super().get_queryset(request).order_by("run", "number")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    # The event by id only: the jobs app does not query through Job.event (domain/jobs/hooks.py);
    # the event's own page (events admin) lists its jobs.
    list_display = ("id", "kind", "status", "attempts", "max_attempts", "created_at",
                    "finished_at", "next_retry_at", "event_id")
    list_filter = ("status", "kind", "created_at")
    search_fields = ("=id", "kind", "handler", "=correlation_id")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [JobAttemptInline]
    actions = ("replay_jobs", "cancel_jobs")

    def get_search_results(self, request, queryset, search_term):
        """Also find the jobs of an event by the event's id (the admin's `=event_id` lookup
        would be a case-insensitive match, which a foreign key does not support)."""
        results, distinct = super().get_search_results(request, queryset, search_term)
        try:
            event_id = uuid.UUID(search_term.strip())
        except ValueError:
            return results, distinct
        return results | queryset.filter(event_id=event_id), distinct

    def _each(self, request, queryset, service, verb: str) -> None:
        done, refused = 0, []
        for job in queryset:
            try:
                service(job=job)
                done += 1
            except Conflict as exc:
                refused.append(f"{job.pk} ({exc.details.get('status')})")
        self.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not {verb.lower()}: {', '.join(refused[:20])}",
                              messages.WARNING)

    @admin.action(description="Replay selected dead or cancelled jobs")
    def replay_jobs(self, request, queryset):
        self._each(request, queryset, job_replay, "Replayed")

    @admin.action(description="Cancel selected queued or retrying jobs")
    def cancel_jobs(self, request, queryset):
        self._each(request, queryset, job_cancel, "Cancelled")


@admin.register(JobAttempt)
class JobAttemptAdmin(admin.ModelAdmin):
    list_display = ("job", "run", "number", "outcome", "error_type", "worker", "finished_at")
    list_filter = ("outcome",)
    search_fields = ("=job__id", "error_type", "error_message")
    readonly_fields = [f.name for f in JobAttempt._meta.fields]

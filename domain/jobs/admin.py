from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.template.response import TemplateResponse

from domain.access.audit import actor_from_request, audit_admin_action
from domain.access.models import AuditAction
from domain.common.admin_actions import confirmation_page, with_event_id_match
from domain.jobs.explainer import explainer
from domain.jobs.models import (
    REPLAYABLE_JOB_STATUSES,
    RUNNABLE_JOB_STATUSES,
    Job,
    JobAttempt,
    JobStatus,
    QueuePause,
)
from domain.jobs.routing import declared_queues
from domain.jobs.services import (
    jobs_cancel_selected,
    jobs_replay_selected,
    queue_pause,
    queue_resume,
)

# Jobs one "Replay selected" replays at most (the oldest first): the replayed rows are read back
# to be handed to the broker in the same request. The action says how many are left.
ADMIN_REPLAY_LIMIT = 10_000


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
    # First on the page: why it is (not) running, as GET /api/v1/jobs/{id}/explain says it.
    fields = ["why", *(f.name for f in Job._meta.fields)]
    readonly_fields = fields
    inlines = [JobAttemptInline]
    actions = ("replay_jobs", "cancel_jobs")

    @admin.display(description="Why (not) running")
    def why(self, job: Job) -> str:
        """The workers app's answer (domain/jobs/explainer.py): the reason code and its
        sentence."""
        if job._state.adding:  # the add form's blank job: nothing to explain yet
            return "-"
        explanation = explainer().explain(job)
        if explanation is None:
            return "No explanation available (the worker runtime is not installed)."
        return f"{explanation.reason}: {explanation.message}"

    def get_search_results(self, request, queryset, search_term):
        """Also find the jobs of an event by the event's id."""
        results, distinct = super().get_search_results(request, queryset, search_term)
        return with_event_id_match(results, queryset, search_term), distinct

    # --- actions: a confirmation page first, then one set-wise service call ---------------
    # As Django's "Delete selected": the action answers a page that posts the same selection
    # back with `post=yes`. The page counts the selection by status (one query), and the
    # service changes the rows in a few statements: neither grows with the selection, also
    # for "select all N" across pages, which stays a query (the changelist's filters) and is
    # never loaded into memory.

    @admin.action(description="Replay selected dead or cancelled jobs", permissions=["change"])
    def replay_jobs(self, request, queryset):
        return self._act(
            request, queryset, action="replay_jobs", audited=AuditAction.REPLAY, verb="Replay",
            past="replayed",
            eligible_statuses=REPLAYABLE_JOB_STATUSES,
            effect="Each runs again with fresh attempts; its attempt history is kept.",
            limit=ADMIN_REPLAY_LIMIT,
            run=lambda: jobs_replay_selected(ids=queryset.values("pk"), limit=ADMIN_REPLAY_LIMIT),
            why=f"changed meanwhile, busy, or past the {ADMIN_REPLAY_LIMIT} one action replays")

    @admin.action(description="Cancel selected queued or retrying jobs", permissions=["change"])
    def cancel_jobs(self, request, queryset):
        return self._act(
            request, queryset, action="cancel_jobs", audited=AuditAction.CANCEL, verb="Cancel",
            past="cancelled",
            eligible_statuses=RUNNABLE_JOB_STATUSES,
            effect="They never run; a message already on the broker finds them cancelled.",
            run=lambda: jobs_cancel_selected(ids=queryset.values("pk")),
            why="a worker started them or they changed meanwhile")

    def _act(self, request, queryset, *, action: str, audited: str, verb: str, past: str,
             eligible_statuses, effect: str, run: Callable[[], int], why: str,
             limit: int | None = None) -> TemplateResponse | None:
        """The flow both actions share: count the selection by status; without `post=yes`,
        the confirmation page (or a warning when nothing is eligible); with it, `run` the
        service, record it in the audit log, and report what it did and what it left."""
        by_status = _count_by_status(queryset)
        eligible = sum(by_status.get(s, 0) for s in eligible_statuses)
        if request.POST.get("post") != "yes":
            return self._confirmation(
                request, action=action, verb=verb, past=past, by_status=by_status,
                eligible_statuses=eligible_statuses, eligible=eligible, effect=effect,
                limit=limit if limit is not None and eligible > limit else None)
        done = run()
        audit_admin_action(request, action=audited, target_type="jobs", count=done)
        self._report(request, past.capitalize(), done, eligible, by_status,
                     eligible_statuses, why=why)
        return None

    def _confirmation(self, request, *, action: str, verb: str, past: str,
                      by_status: dict[str, int], eligible_statuses, eligible: int, effect: str,
                      limit: int | None = None) -> TemplateResponse | None:
        total = sum(by_status.values())
        if not eligible:
            self.message_user(request, f"Nothing to {verb.lower()}: none of the {total} "
                              f"selected job(s) is {_either(eligible_statuses)}.",
                              messages.WARNING)
            return None  # back to the list
        return confirmation_page(
            self, request, "admin/jobs/job/action_confirmation.html",
            action=action, verb=verb, title=f"{verb} {eligible} job(s)?",
            submit_label=f"Yes, {verb.lower()} {eligible} job(s)",
            past=past, total=total, eligible=eligible, effect=effect, limit=limit,
            statuses=[(s, by_status[s], s in eligible_statuses) for s in JobStatus.values
                      if s in by_status],
            eligible_statuses=_either(eligible_statuses))

    def _report(self, request, verb: str, done: int, eligible: int, by_status: dict[str, int],
                eligible_statuses, *, why: str) -> None:
        self.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)
        if done < eligible:
            self.message_user(
                request, f"{eligible - done} {_either(eligible_statuses)} job(s) of the "
                f"selection were not {verb.lower()} ({why}); run the action again for them.",
                messages.WARNING)
        others = {s: n for s, n in by_status.items() if s not in eligible_statuses}
        if others:
            listed = ", ".join(f"{n} {s}" for s, n in others.items())
            self.message_user(request, f"Left as they were: {listed}.", messages.INFO)


def _count_by_status(queryset: QuerySet[Job]) -> dict[str, int]:
    """{status: jobs} of a selection, in one query whatever its size."""
    rows = (Job.objects.filter(pk__in=queryset.values("pk")).order_by().values("status")
            .annotate(n=Count("pk")))
    return {row["status"]: row["n"] for row in rows}


def _either(statuses) -> str:
    return " or ".join(str(s) for s in statuses)


@admin.register(JobAttempt)
class JobAttemptAdmin(admin.ModelAdmin):
    list_display = ("job", "run", "number", "outcome", "error_type", "worker", "finished_at")
    list_filter = ("outcome",)
    search_fields = ("=job__id", "error_type", "error_message")
    readonly_fields = [f.name for f in JobAttempt._meta.fields]


class QueuePauseForm(forms.ModelForm):
    queue = forms.ChoiceField(choices=(), help_text="Its workers stop consuming it; its jobs stay "
                              "queued, no attempt used, until it is resumed.")

    class Meta:
        model = QueuePause
        fields = ("queue", "reason")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        paused = set(QueuePause.objects.values_list("queue", flat=True))
        self.fields["queue"].choices = [(q, q) for q in declared_queues() if q not in paused]


@admin.register(QueuePause)
class QueuePauseAdmin(admin.ModelAdmin):
    """The paused queues. "Add" pauses one, "Resume selected queues" (or deleting the row)
    resumes: both through the services, which record the audit entry and tell the workers.
    Who may do which is Django's add and delete permissions on this model."""

    form = QueuePauseForm
    list_display = ("queue", "paused_at", "paused_by", "reason")
    readonly_fields = ("paused_at", "paused_by")
    actions = ("resume_queues",)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a pause is added or resumed, never edited

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "Resume selected queues" instead
        return actions

    def save_model(self, request, obj, form, change) -> None:
        queue_pause(queue=obj.queue, actor=actor_from_request(request), reason=obj.reason)

    def delete_model(self, request, obj) -> None:
        queue_resume(queue=obj.queue, actor=actor_from_request(request))

    @admin.action(description="Resume selected queues", permissions=["delete"])
    def resume_queues(self, request, queryset):
        names = list(queryset.values_list("queue", flat=True))
        for name in names:
            queue_resume(queue=name, actor=actor_from_request(request))
        self.message_user(request, f"Resumed {len(names)} queue(s): {', '.join(names)}.",
                          messages.SUCCESS)

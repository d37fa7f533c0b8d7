"""Bulk runs in the admin: what each is doing and how far it got, and the operator's three
levers (pause, resume, cancel), each going through the same service as the API. Runs are
started from the API or `manage.py bulk_update`, never edited here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.utils.html import format_html

from domain.access.audit import audit_admin_action
from domain.access.models import AuditAction
from domain.bulk import selectors, services
from domain.bulk.models import BulkRun
from domain.common.errors import Conflict

# A bulk run is started on purpose and steered one at a time; an action taking more than
# this many would more likely be a mis-click on "select all".
ADMIN_STEER_LIMIT = 50


@admin.register(BulkRun)
class BulkRunAdmin(admin.ModelAdmin):
    list_display = ("id", "operation", "status", "requested", "dry_run", "progress",
                    "rows_changed", "rate", "created_at", "finished_at")
    list_filter = ("status", "operation", "dry_run", "created_at")
    search_fields = ("=id", "operation", "=correlation_id")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in BulkRun._meta.fields]
    actions = ("pause_runs", "resume_runs", "cancel_runs")
    list_select_related = ("job",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request, obj: Any = None) -> bool:
        # The record is the runner's: a run's page is read-only. The list asks with no run,
        # and its actions (the levers) need the change permission (permissions=["change"]).
        return obj is None and super().has_change_permission(request)

    @admin.display(description="progress")
    def progress(self, run: BulkRun) -> str:
        if not run.rows_matched:
            return f"{run.rows_done:,} rows"
        share = min(run.rows_done / run.rows_matched, 1.0)
        return format_html('<progress value="{}" max="100"></progress> {}% ({} / {})',
                           int(share * 100), f"{share * 100:.1f}", f"{run.rows_done:,}",
                           f"{run.rows_matched:,}")

    @admin.display(description="rows/s")
    def rate(self, run: BulkRun) -> str:
        rate = selectors.bulk_run_rate(run)
        return f"{rate:,.0f}" if rate else "-"

    @admin.action(description="Pause selected runs (at the next chunk boundary)",
                  permissions=["change"])
    def pause_runs(self, request, queryset):
        self._steer(request, queryset, services.bulk_run_pause, "paused", AuditAction.PAUSE)

    @admin.action(description="Resume selected paused or failed runs (from the checkpoint)",
                  permissions=["change"])
    def resume_runs(self, request, queryset):
        self._steer(request, queryset, services.bulk_run_resume, "resumed", AuditAction.RESUME)

    @admin.action(description="Cancel selected runs (committed chunks stay committed)",
                  permissions=["change"])
    def cancel_runs(self, request, queryset):
        self._steer(request, queryset, services.bulk_run_cancel, "cancelled", AuditAction.CANCEL)

    def _steer(self, request, queryset, steer: Callable[..., BulkRun], past: str,
               audited: str) -> None:
        runs = list(queryset.order_by("created_at")[: ADMIN_STEER_LIMIT + 1])
        if len(runs) > ADMIN_STEER_LIMIT:
            self.message_user(request, f"Select at most {ADMIN_STEER_LIMIT} runs at a time.",
                              messages.ERROR)
            return
        done, refused = [], []
        for run in runs:
            try:
                steered = steer(run=run)
            except Conflict as exc:
                refused.append(f"{run.pk}: {exc.message}")
                continue
            done.append(f"{run.pk} ({steered.status}"
                        f"{', ' + steered.requested + ' asked' if steered.requested else ''})")
        if done:
            audit_admin_action(request, action=audited, target_type="bulk_runs",
                               count=len(done), detail={"refused": len(refused)})
            self.message_user(request, f"{past.capitalize()}: {'; '.join(done)}.",
                              messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not {past}: {'; '.join(refused)}", messages.WARNING)

"""The operator dashboard page, /admin/dashboard/ (config/urls.py wraps it in the admin's
login check). GET shows it to `scheduler.view_dashboard`; a POST acts (replay by filter,
pause or resume a queue) and needs `scheduler.operate` too: anyone else gets 403 and nothing
changes.

Replay by filter is two POSTs: `preview` counts the dead jobs the filter matches and shows
the confirmation; `replay` replays exactly that filter (at most REPLAY_LIMIT, the oldest
first), records who did it in the audit log in the same transaction, and redirects back.
"""

from __future__ import annotations

import logging

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from domain.access.audit import actor_from_request, audit_record
from domain.access.models import AuditAction
from domain.jobs.models import JobStatus
from domain.jobs.selectors import jobs_matching_replay
from domain.jobs.services import jobs_replay, queue_pause, queue_resume
from scheduler.dashboard.forms import REPLAY_LIMIT, ReplayConfirmForm, ReplayFilterForm
from scheduler.dashboard.panels import dashboard_panels
from scheduler.dashboard.roles import OPERATE_PERMISSION, VIEW_PERMISSION
from workers.selectors import queue_names

logger = logging.getLogger(__name__)

TEMPLATE = "admin/scheduler/dashboard.html"


@require_http_methods(["GET", "POST"])
def operator_dashboard(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    can_operate = request.user.has_perm(OPERATE_PERMISSION)
    if request.method == "GET":
        panels = dashboard_panels(now=timezone.now())
        return _page(request, panels, can_operate=can_operate,
                     replay_form=ReplayFilterForm(dead_kinds=_dead_kinds(panels)))
    if not can_operate:
        raise PermissionDenied
    action = request.POST.get("action")
    if action == "preview":
        return _preview(request)
    if action == "replay":
        return _replay(request)
    if action in ("pause", "resume"):
        return _steer_queue(request, action)
    return HttpResponseBadRequest("Unknown action.")


def _page(request: HttpRequest, panels: dict, *, can_operate: bool, status: int = 200,
          **extra) -> TemplateResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Operator dashboard",
        "can_operate": can_operate,
        "replay_limit": REPLAY_LIMIT,
        **panels,
        **extra,
    }
    return TemplateResponse(request, TEMPLATE, context, status=status)


def _dead_kinds(panels: dict) -> list[str]:
    return [row.kind for row in panels["dead"]]


def _preview(request: HttpRequest) -> TemplateResponse:
    now = timezone.now()
    panels = dashboard_panels(now=now)
    form = ReplayFilterForm(request.POST, dead_kinds=_dead_kinds(panels))
    if not form.is_valid():
        return _page(request, panels, can_operate=True, status=400, replay_form=form)
    replay_filter = form.filter_at(now)
    matched = jobs_matching_replay(api_key=None, status=JobStatus.DEAD,
                                   **_or_none(replay_filter)).count()
    return _page(request, panels, can_operate=True, replay_form=form,
                 confirm_form=ReplayConfirmForm.for_filter(replay_filter, matched=matched),
                 matched=matched, replaying=min(matched, REPLAY_LIMIT),
                 replay_filter=replay_filter)


def _replay(request: HttpRequest) -> HttpResponse:
    form = ReplayConfirmForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("The confirmation does not carry a valid filter; "
                                      "start again from the dry run.")
    replay_filter = form.replay_filter()
    with transaction.atomic():
        count = jobs_replay(api_key=None, status=JobStatus.DEAD, limit=REPLAY_LIMIT,
                            **replay_filter)
        audit_record(actor=actor_from_request(request), action=AuditAction.REPLAY,
                     target_type="jobs", target=_summary(replay_filter), count=count,
                     detail={"via": "dashboard", "status": JobStatus.DEAD,
                             "filter": {key: value.isoformat() if hasattr(value, "isoformat")
                                        else value for key, value in replay_filter.items()},
                             "matched": form.cleaned_data["matched"], "limit": REPLAY_LIMIT})
    logger.info("dashboard replay count=%d user=%s", count, request.user.get_username())
    messages.success(request, f"Replayed {count} dead job{'s' if count != 1 else ''} "
                     f"({_summary(replay_filter)}).")
    return redirect(request.path)


def _steer_queue(request: HttpRequest, action: str) -> HttpResponse:
    """Pause or resume a queue through the same services as the API and `manage.py queues`
    (they write the audit row, and tell the running workers)."""
    queue = request.POST.get("queue", "")
    if queue not in queue_names():
        return HttpResponseBadRequest("No such queue.")
    actor = actor_from_request(request)
    if action == "pause":
        queue_pause(queue=queue, actor=actor, reason=request.POST.get("reason", "").strip()[:500])
        messages.success(request, f"Paused the {queue} queue: its jobs wait, queued, until it "
                         "is resumed.")
    else:
        queue_resume(queue=queue, actor=actor)
        messages.success(request, f"Resumed the {queue} queue.")
    return redirect(request.path)


def _or_none(replay_filter: dict) -> dict:
    return {key: value or None for key, value in replay_filter.items()}


def _summary(replay_filter: dict) -> str:
    """The filter in a line, for the audit log's target and the message."""
    parts = [f"{key}={replay_filter[key]}" for key in ("kind", "event_type", "error_type")
             if replay_filter.get(key)]
    since, until = replay_filter.get("since"), replay_filter["until"]
    window = (f"died {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC" if since
              else f"died before {until:%Y-%m-%d %H:%M} UTC")
    return ", ".join([*parts, window]) if parts else f"every kind, {window}"

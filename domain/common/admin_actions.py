"""The confirmation page before an admin action that changes many rows, as Django's own
"Delete selected" has: counts instead of rows (the page is the same size for 3 rows and for
"select all" across pages), then the same selection posted back with post=yes."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.admin import helpers
from django.template.response import TemplateResponse


def confirmation_page(model_admin, request, template: str, *, action: str, verb: str,
                      submit_label: str, title: str, **summary: Any) -> TemplateResponse:
    """Render `template` (which extends admin/confirm_action.html and fills its `summary`
    block from `summary`) for the selection in `request`."""
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, template, {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "action": action,
        "verb": verb,
        "submit_label": submit_label,
        "select_across": request.POST.get("select_across") == "1",
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        **summary,
    })


def with_event_id_match(results, queryset, search_term: str, field: str = "event_id"):
    """An admin search's results, and the rows whose `field` is the event id searched for
    (the admin's `=event_id` lookup would be a case-insensitive match, which a foreign key or
    a UUID column does not support)."""
    try:
        event_id = uuid.UUID(search_term.strip())
    except ValueError:
        return results
    return results | queryset.filter(**{field: event_id})

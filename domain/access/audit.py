"""The operator audit log: every replay, cancel, pause, resume, run-now, recover, rotate and
revoke, from the API, the admin or the command line, is one `AuditEntry` row.

Interfaces (API views, admin actions, management commands) name the actor with one of the
`actor_*` helpers and call `audit_record` after the service has acted, in the same
transaction where there is one, with how many rows it changed.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from domain.access.models import ActorKind, ApiKey, AuditEntry
from domain.common.correlation import get_correlation_id

# The ids an entry lists of an admin selection (a changelist page shows 100 rows).
LISTED_IDS = 100
# Changelist parameters that do not choose rows: ordering and page.
_NOT_FILTERS = ("o", "p")


@dataclass(frozen=True)
class Actor:
    kind: str
    name: str


def actor_from_request(request) -> Actor:
    """The API key behind an API request (DRF puts it in `request.auth`), or the admin user
    behind a page request."""
    api_key = getattr(request, "auth", None)
    if isinstance(api_key, ApiKey):
        return Actor(ActorKind.API_KEY, f"{api_key.name} ({api_key.prefix}…)")
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return Actor(ActorKind.USER, user.get_username())
    return Actor(ActorKind.USER, "anonymous")


def actor_for_command(command: str) -> Actor:
    """Whoever ran a management command: the OS user, and the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = "unknown"
    return Actor(ActorKind.COMMAND, f"{user} (manage.py {command})"[:200])


def audit_record(*, actor: Actor, action: str, target_type: str, target: str = "",
                 count: int = 1, detail: dict[str, Any] | None = None) -> AuditEntry:
    correlation_id = get_correlation_id()
    return AuditEntry.objects.create(
        actor_kind=actor.kind, actor=actor.name[:200], action=action,
        target_type=target_type, target=str(target)[:255], count=max(0, int(count)),
        detail=detail or {}, correlation_id="" if correlation_id == "-" else correlation_id)


def audit_filter(*, actor: Actor, action: str, target_type: str, filters: Mapping[str, Any],
                 count: int) -> AuditEntry:
    """An action on the rows matching a filter (`jobs/retry`, `replay_jobs`): the target says
    the filter in one line (`status=dead kind=noop`), the detail keeps it."""
    kept = {name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in filters.items() if value is not None and value != ""}
    target = " ".join(f"{name}={value}" for name, value in kept.items()) or "(no filter)"
    return audit_record(actor=actor, action=action, target_type=target_type, target=target,
                        count=count, detail={"filter": kept})


def audit_admin_action(request, *, action: str, target_type: str, count: int,
                       detail: dict[str, Any] | None = None) -> AuditEntry:
    """An admin action on a changelist selection, by the user behind `request`: the ids ticked
    (the target names the one, or says how many), or, for "select all" across pages, the
    list's filters, which are what chose the rows."""
    if request.POST.get("select_across") == "1":
        filters = request.GET.copy()
        for name in _NOT_FILTERS:
            filters.pop(name, None)
        query = filters.urlencode()
        target, scope = f"all matching {query or '(no filter)'}", {"filters": query}
    else:
        ids = request.POST.getlist(ACTION_CHECKBOX_NAME)
        target = ids[0] if len(ids) == 1 else f"{len(ids)} selected"
        scope = {"ids": ids[:LISTED_IDS]}
    return audit_record(actor=actor_from_request(request), action=action,
                        target_type=target_type, target=target, count=count,
                        detail={**scope, **(detail or {})})

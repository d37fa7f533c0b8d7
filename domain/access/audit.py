"""The operator audit log: every replay, cancel, pause, resume, run-now, recover, rotate and
revoke, from the API, the admin or the command line, is one `AuditEntry` row.

Interfaces (API views, admin actions, management commands) name the actor with one of the
`actor_*` helpers and call `audit_record` after the service has acted, in the same
transaction where there is one, with how many rows it changed.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from domain.access.models import ActorKind, ApiKey, AuditEntry
from domain.common.correlation import get_correlation_id


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

"""The dashboard's two roles, as Django groups declared here.

- **Conveyor viewers** see the dashboard (and the run ledger, audit log and queue pauses
  pages) and act on nothing.
- **Conveyor operators** also act from it (`scheduler.operate`: replay by filter, pause and
  resume), pause and resume queues in the admin too, and see the rows its panels link to.

Every custom admin action asks for the change permission (`@admin.action(permissions=
["change"])`), so viewers may see the jobs, events, endpoints, deliveries, bulk runs and
schedules the panels link to without being offered an action there; operators hold the change
permission of the lists whose actions they take (replay, cancel, pause, recover …). Those
admins show every field read-only, so "change" gives no way to edit a row's fields.

The groups are synced after every `migrate` (scheduler/apps.py; a test database's flush sends
the same signal): created if missing, each declared permission added. Nothing is taken away,
so an administrator's additions stay; a user gets a role by joining its group in the admin
(Users → the user → Groups, with "Staff status" on).
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

logger = logging.getLogger(__name__)

VIEWERS = "Conveyor viewers"
OPERATORS = "Conveyor operators"

VIEW_PERMISSION = "scheduler.view_dashboard"
OPERATE_PERMISSION = "scheduler.operate"

# What both roles see (the queue pauses' "Resume" needs delete, so viewers only list them).
_SEES = (VIEW_PERMISSION, "scheduler.view_schedulerun", "access.view_auditentry",
         "jobs.view_queuepause", "jobs.view_job", "jobs.view_jobattempt", "events.view_event",
         "notifications.view_webhookendpoint", "notifications.view_delivery",
         "bulk.view_bulkrun", "django_celery_beat.view_periodictask")
ROLES: dict[str, tuple[str, ...]] = {
    VIEWERS: _SEES,
    OPERATORS: (*_SEES, OPERATE_PERMISSION, "jobs.add_queuepause", "jobs.delete_queuepause",
                "jobs.change_job", "notifications.change_webhookendpoint",
                "notifications.change_delivery", "bulk.change_bulkrun",
                "django_celery_beat.change_periodictask"),
}


def _permissions(names: tuple[str, ...]) -> list[Permission]:
    wanted = Q(pk__in=[])
    for name in names:
        app_label, codename = name.split(".", 1)
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    found = list(Permission.objects.filter(wanted).select_related("content_type"))
    missing = set(names) - {f"{p.content_type.app_label}.{p.codename}" for p in found}
    if missing:  # a renamed model, or a migrate that stopped short of its app: said, not fatal
        logger.warning("operator roles: no such permissions yet permissions=%s", sorted(missing))
    return found


def roles_sync() -> dict[str, int]:
    """Each role's group, with its declared permissions; answers {group: permissions}."""
    synced = {}
    for name, permissions in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*_permissions(permissions))
        synced[name] = group.permissions.count()
    return synced

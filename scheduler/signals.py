"""A slot whose message expired in the queue is recorded `skipped: expired`.

Beat gives each message the schedule's `expires`; a worker that takes it later drops it
without running the task (a backlog never turns into a burst of stale maintenance runs), and
without this hook the slot would have no row at all. Celery announces the drop with
`task_revoked(expired=True)` in the worker's main process, with the message's headers in
the request.
"""

from __future__ import annotations

import logging

from celery.signals import task_revoked
from django.db import DatabaseError, connection

from scheduler.ledger import ledger_record_skip, request_header, request_slot
from scheduler.models import SkipReason
from scheduler.schedules import MANAGED_PREFIX, schedule_name

logger = logging.getLogger(__name__)


@task_revoked.connect(dispatch_uid="scheduler.record_expired_slot")
def record_expired_slot(sender=None, request=None, expired=False, **kwargs) -> None:
    if not expired or request is None:
        return
    slot, trigger = request_slot(request)
    periodic = request_header(request, "periodic_task_name") or ""
    if slot is None or not periodic.startswith(MANAGED_PREFIX):
        return
    try:
        ledger_record_skip(schedule_name(periodic), slot=slot, reason=SkipReason.EXPIRED,
                           trigger=trigger,
                           detail="The message waited in the queue past its expiry.")
    except DatabaseError as exc:
        logger.warning("an expired slot was not recorded schedule=%s error=%r", periodic, exc)
    finally:
        # The worker's main process (the consumer) uses the database for nothing else: keep
        # no connection open there.
        connection.close()


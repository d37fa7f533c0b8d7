"""The daily prune: which rows go, after how many days (a setting each), in which order.

Each family belongs to the app that owns its tables (`<app>/retention.py`); this module only
orders them and shares out the time. The order follows the foreign keys between apps:

- bulk runs whose job has ended are settled before the jobs' prune can delete the job (the
  run would otherwise hold its rows with no job to end it), and old runs go before the jobs,
  so fewer `BulkRun.job` references need setting to NULL;
- jobs (with their attempts) before events: an event goes only once no job is left;
- deliveries (with their attempts) before messages, notifications and digests: those go only
  once no delivery is left.

**Time.** One run has PRUNE_MAX_SECONDS in all. Each family gets a fair share of what is left
(the time left divided by the families still to go), so a huge table cannot starve the ones
after it, and a family that finishes early leaves its time to the next. Families left
incomplete get further turns while time remains; what is still undone then is resumed by the
next run, each table from its own checkpoint (domain/common/pruning.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.utils import timezone

from domain.bulk.retention import bulk_runs_prune, bulk_runs_settle_ended
from domain.common.pruning import PruneReport
from domain.events.retention import batch_publishes_prune, events_prune
from domain.jobs.retention import jobs_prune, task_results_prune
from domain.notifications.retention import (
    deliveries_prune,
    digests_prune,
    inbox_prune,
    messages_prune,
    notifications_prune,
)
from scheduler.ledger import ledger_prune

logger = logging.getLogger(__name__)


class Family(NamedTuple):
    label: str
    setting: str  # the retention in days; 0 keeps the family for ever
    prune: Callable[..., PruneReport]  # (cutoff=, deadline=) -> PruneReport


PLAN: tuple[Family, ...] = (
    Family("bulk runs whose job ended", "RETENTION_JOBS_DAYS", bulk_runs_settle_ended),
    Family("bulk runs", "RETENTION_BULK_RUNS_DAYS", bulk_runs_prune),
    Family("jobs", "RETENTION_JOBS_DAYS", jobs_prune),
    Family("task results", "RETENTION_TASK_RESULTS_DAYS", task_results_prune),
    Family("events", "RETENTION_JOBS_DAYS", events_prune),
    Family("batch publishes", "RETENTION_JOBS_DAYS", batch_publishes_prune),
    Family("deliveries", "RETENTION_NOTIFICATIONS_DAYS", deliveries_prune),
    Family("messages", "RETENTION_NOTIFICATIONS_DAYS", messages_prune),
    Family("notifications", "RETENTION_NOTIFICATIONS_DAYS", notifications_prune),
    Family("digests", "RETENTION_NOTIFICATIONS_DAYS", digests_prune),
    Family("inbox items", "RETENTION_INBOX_DAYS", inbox_prune),
    # The run ledger, last: nothing points at a ledger row.
    Family("schedule runs", "RETENTION_SCHEDULE_RUNS_DAYS", ledger_prune),
)


def retention_prune(*, now: datetime | None = None, plan: tuple[Family, ...] = PLAN) -> dict:
    """Run every family with its cutoff (`now` minus its setting's days) within
    PRUNE_MAX_SECONDS; answer what was done, per family and per table."""
    now = now or timezone.now()
    started = time.monotonic()
    ends = started + settings.PRUNE_MAX_SECONDS
    families: dict[str, dict] = {}
    reports: dict[str, PruneReport] = {}
    pending: list[Family] = []
    for family in plan:
        days = getattr(settings, family.setting)
        if days:
            pending.append(family)
        else:
            families[family.label] = {"skipped": f"{family.setting} is 0 (kept for ever)"}
    cutoffs = {f.label: now - timedelta(days=getattr(settings, f.setting)) for f in pending}
    while pending and time.monotonic() < ends:
        unfinished = []
        for position, family in enumerate(pending):
            share = max(0.0, ends - time.monotonic()) / (len(pending) - position)
            report = family.prune(cutoff=cutoffs[family.label],
                                  deadline=time.monotonic() + share)
            finished = report.complete
            if family.label in reports:  # a further turn: the counts add up, its end decides
                report = reports[family.label].add(report)
                report.complete = finished
            reports[family.label] = report
            if not finished:
                unfinished.append(family)
        pending = unfinished
    deleted: dict[str, int] = {}
    for label, report in reports.items():
        families[label] = {**report.as_dict(), "cutoff": cutoffs[label].isoformat()}
        for table, count in report.deleted.items():
            deleted[table] = deleted.get(table, 0) + count
    outcome = {"deleted": deleted, "rows": sum(deleted.values()),
               "complete": not pending and all(r.complete for r in reports.values()),
               "seconds": round(time.monotonic() - started, 3),
               "families": {f.label: families[f.label] for f in plan if f.label in families}}
    logger.info("retention prune rows=%d complete=%s seconds=%.1f deleted=%s", outcome["rows"],
                outcome["complete"], outcome["seconds"], deleted)
    return outcome

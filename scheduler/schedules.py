"""Periodic jobs, declared in code and synced into django-celery-beat's tables.

Every entry has `expires`: a tick that waited longer than that in the queue is dropped rather
than run late, so a backlog never turns into a burst of stale maintenance runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    reason: str  # plain words: why this runs, shown in the admin
    every_seconds: int | None = None
    cron: str | None = None  # "minute hour day_of_month month_of_year day_of_week"
    expires_seconds: int = 60
    enabled: bool = True

    def __post_init__(self) -> None:
        if (self.every_seconds is None) == (self.cron is None):
            raise ValueError(f"{self.name}: give exactly one of every_seconds and cron")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError(f"{self.name}: cron needs five fields")


SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        name="outbox-relay",
        task="conveyor.maintenance.relay_outbox",
        every_seconds=5,
        expires_seconds=5,
        reason="Enqueue events and jobs committed while the broker was unreachable, and "
        "delayed jobs that are now due.",
    ),
    Schedule(
        name="orphan-rescue",
        task="conveyor.maintenance.rescue_orphans",
        every_seconds=5,
        expires_seconds=5,
        reason="Run again the jobs whose worker died (kill -9, OOM, a lost machine): their "
        "lease lapsed. One indexed query on running jobs.",
    ),
)

"""Worker profiles: which queues a worker consumes and how, by role.

`all` is the one-machine default. In production run one worker per profile so slow bulk work
never delays cache invalidation (see compose/). Figures behind the defaults: PERF-FACTS.md.
"""

from dataclasses import dataclass

from workers.queues import ALL_QUEUES, Queues


@dataclass(frozen=True)
class WorkerProfile:
    name: str
    queues: str
    concurrency: int
    pool: str = "prefork"

    def command(self, hostname: str | None = None, loglevel: str = "INFO") -> list[str]:
        cmd = ["celery", "-A", "config", "worker", "-l", loglevel, "-Q", self.queues,
               "-c", str(self.concurrency), "-P", self.pool, "-O", "fair"]
        if hostname:
            cmd += ["-n", hostname]
        return cmd


PROFILES = {
    p.name: p
    for p in (
        WorkerProfile("all", ALL_QUEUES, concurrency=2),
        WorkerProfile("fast", f"{Queues.EVENTS},{Queues.CACHE},{Queues.MAINTENANCE}",
                      concurrency=2),
        WorkerProfile("notifications", Queues.NOTIFICATIONS.value, concurrency=4),
        WorkerProfile("bulk", Queues.BULK.value, concurrency=1),
    )
}

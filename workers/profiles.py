"""Worker profiles: which queues a worker consumes and how, by role.

`all` is every queue in one prefork worker (the smallest install). `main` is every queue but
`notifications`, which its own worker (`notifications`) consumes with a pool of threads:
webhook deliveries wait on other people's servers, and a thread waiting on a slow receiver
costs a thread, where a prefork process waiting on it would be a process taken from every
other queue (up to the read timeout, 15 s). `runstack` runs `main` + `notifications`; the
production compose file runs one worker service per role, `fast`, `bulk` and `notifications`,
so slow bulk work never delays cache invalidation (compose/README.md). The concurrency
defaults follow the queue figures in the README's "Performance" section: on 2 cores a prefork
worker's drain rate grows with its consuming processes, not with prefetch or pool options.

The container start script reads its queues from here (`python -m workers.profiles <profile>
queues`), so a queue list is written down once.
"""

from __future__ import annotations

import argparse
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
        WorkerProfile("main", ",".join(q.value for q in Queues if q != Queues.NOTIFICATIONS),
                      concurrency=2),
        WorkerProfile("fast", f"{Queues.EVENTS},{Queues.CACHE},{Queues.MAINTENANCE}",
                      concurrency=2),
        # Threads: each takes a message of up to 100 deliveries and waits while the process's
        # one asyncio loop sends them (domain/notifications/sender.py), so 16 threads keep
        # hundreds of requests in flight on one core's worth of Python.
        WorkerProfile("notifications", Queues.NOTIFICATIONS.value, concurrency=16,
                      pool="threads"),
        WorkerProfile("bulk", Queues.BULK.value, concurrency=1),
    )
}


def main(argv: list[str] | None = None) -> None:
    """Print one field of a profile, for shell scripts (compose/celery/worker/start)."""
    parser = argparse.ArgumentParser(prog="python -m workers.profiles",
                                     description="Print a worker profile's field.")
    parser.add_argument("profile", choices=sorted(PROFILES))
    parser.add_argument("field", choices=("queues", "concurrency", "pool"))
    args = parser.parse_args(argv)
    print(getattr(PROFILES[args.profile], args.field))


if __name__ == "__main__":
    main()

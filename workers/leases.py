"""The heartbeat: a worker process renews the leases of the jobs it is running.

One thread per worker process (started on first use, so a prefork child starts its own after
the fork) renews every third of JOB_LEASE_SECONDS, through the lifecycle service
(domain/jobs/lifecycle.jobs_renew_leases), on its own database connection. While it renews, a
slow job is never taken from its worker; when the process dies, the renewals stop and the
orphan rescue runs the job again once the lease has lapsed (domain/jobs/rescue.py).

Written here rather than with Celery's own machinery: Celery's worker heartbeat is an event
for monitors (Flower), and its time limits end a task but say nothing to our rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from domain.jobs.lifecycle import jobs_renew_leases

logger = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self) -> None:
        self._held: Counter[str] = Counter()  # job id -> how many runs in this process hold it
        self._worker = ""  # the name claims record: the node's, the same for every task here
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    @contextlib.contextmanager
    def hold(self, job_ids: Iterable[str], worker: str) -> Iterator[None]:
        """Keep renewing these jobs' leases while the block runs."""
        ids = [str(i) for i in job_ids]
        self.adopt(ids, worker)
        try:
            yield
        finally:
            self.release(ids)

    def adopt(self, job_ids: Iterable[str], worker: str) -> None:
        """Renew these jobs' leases until `release` (work that outlives its task: a webhook
        still waiting on its receiver after the task moved on)."""
        ids = [str(i) for i in job_ids]
        with self._lock:
            self._held.update(ids)
            self._worker = worker or self._worker
            if ids:
                self._ensure_thread()

    def release(self, job_ids: Iterable[str]) -> None:
        with self._lock:
            self._held.subtract(str(i) for i in job_ids)
            self._held = +self._held  # drop what no run holds any more

    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def _ensure_thread(self) -> None:
        # A thread does not survive fork: a prefork child that inherited the parent's keeper
        # object starts its own.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="conveyor-lease-keeper",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = max(settings.JOB_LEASE_SECONDS / 3, 0.5)
        while not self._wake.wait(interval):
            self.renew()

    def renew(self) -> int:
        """One round of renewals; how many leases were renewed."""
        with self._lock:
            ids, worker = list(self._held), self._worker
        if not ids:
            return 0
        close_old_connections()  # CONN_MAX_AGE and health checks, as around a task
        try:
            return jobs_renew_leases(job_ids=ids, worker=worker)
        except DatabaseError as exc:
            # The database is away: the leases may lapse meanwhile; the rescue does not judge
            # them until it has watched a full lease period again.
            logger.warning("lease renewal failed jobs=%d error=%r", len(ids), exc)
            with contextlib.suppress(DatabaseError):
                connection.close()
            return 0
        finally:
            # And after, as after a task: with CONN_MAX_AGE=0 the connection closes now, not
            # at the next round with jobs to renew, which may never come (an idle worker held
            # it open for good, and a test run could not drop its database).
            close_old_connections()


keeper = LeaseKeeper()

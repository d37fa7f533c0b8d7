"""What a change to jobs does to the events that made them: the one door from jobs to events.

Jobs know their event only as `event_id`. The events app (above this one) installs its
`JobHooks` at start-up (EventsConfig.ready); the jobs app calls these methods at the three
moments an event must follow its jobs, and never imports domain/events. The default does
nothing, so jobs work, and are tested, on their own (a job triggered directly has no event).

Plain method calls, not Django signals: the order and the transaction they run in are part of
the contract, and a reader can follow them (STYLE.md: no signals for business logic).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from domain.jobs.models import Job


class JobHooks:
    #: PostgreSQL only: a statement that follows the one marking jobs sent, in the same round
    #: trip, as `WITH stamped AS (UPDATE <jobs> … RETURNING event_id) <sent_sql>`. It may use
    #: the parameters %(now)s and %(jobs)s (the ids just stamped, uuid[]). Empty: the stamp runs
    #: alone and `jobs_sent(…, in_statement=False)` does the events' part.
    sent_sql: str = ""

    def jobs_sent(self, *, sent: list[Job], given: list[Job], now: datetime,
                  in_statement: bool) -> None:
        """Jobs were handed to the broker (`given` is every job the caller passed: one of them
        not sent keeps its event waiting). `in_statement`: `sent_sql` already ran."""

    def jobs_finished(self, *, event_ids: Collection) -> None:
        """Jobs of these events reached a terminal status (after their own commit)."""

    def jobs_reopened(self, *, event_ids: Collection) -> None:
        """Finished jobs of these events were replayed (inside the replay's transaction)."""


_installed = JobHooks()


def install_hooks(hooks: JobHooks) -> None:
    global _installed
    _installed = hooks


def hooks() -> JobHooks:
    return _installed

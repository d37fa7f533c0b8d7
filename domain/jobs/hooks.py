"""What a change to jobs does to the events that made them: the one door from jobs to events.

Jobs know their event only as `event_id`. The events app (above this one) installs its
`JobHooks` at start-up (EventsConfig.ready); the jobs app calls these methods at the three
moments an event must follow its jobs, and asks them the one question about events it needs
answered (which jobs came from events of a type), and never imports domain/events nor queries
through `Job.event`. The default does nothing, so jobs work, and are tested, on their own (a
job triggered directly has no event).

One set of hooks is installed: the events app's. Installing a second one by mistake would
silently switch the roll-up off, so `install_hooks` refuses unless told to replace (tests).

Plain method calls, not Django signals: the order and the transaction they run in are part of
the contract, and a reader can follow them (STYLE.md: no signals for business logic).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from domain.jobs.models import Job


class JobHooks:
    #: PostgreSQL only: a statement that follows the one marking jobs sent, in the same round
    #: trip, as `WITH locked AS (…), stamped AS (UPDATE <jobs> … RETURNING event_id)
    #: <sent_sql>`: a statement, or `, <more CTEs> <statement>`. It may use the parameters
    #: %(now)s and %(jobs)s (the ids given to the stamp, uuid[]). Empty: the stamp runs
    #: alone and `jobs_sent(…, in_statement=False)` does the events' part.
    sent_sql: str = ""
    #: PostgreSQL only: what follows the statement recording successes, in the same
    #: statement, as `WITH v AS (…), done AS (UPDATE <jobs> … RETURNING id, event_id, …),
    #: attempts AS (INSERT …) <succeeded_sql>`: a statement, or `, <more CTEs> <statement>`,
    #: returning one column, the ids of the events it closed. It sees the rows as they were
    #: before the statement (the jobs in `done` still `running`) and may use %(now)s. Events
    #: of the jobs that it did not close get `jobs_finished` after the commit, as without it.
    succeeded_sql: str = ""

    def jobs_sent(self, *, sent: list[Job], given: list[Job], now: datetime,
                  in_statement: bool, objects: bool = True) -> None:
        """Jobs were handed to the broker (`given` is every job the caller passed: one of them
        not sent keeps its event waiting). `in_statement`: `sent_sql` already ran. `objects`:
        whether the caller's objects (the jobs' cached events) may be updated to match."""

    def jobs_finished(self, *, event_ids: Collection) -> None:
        """Jobs of these events reached a terminal status (after their own commit)."""

    def jobs_reopened(self, *, event_ids: Collection) -> None:
        """Finished jobs of these events were replayed (inside the replay's transaction)."""

    def jobs_of_event_type(self, jobs: QuerySet[Job], event_type: str) -> QuerySet[Job]:
        """`jobs` narrowed to those made by an event of this type (an operator's replay
        filter). Only events know types: with no events app, no job has one."""
        return jobs.none()


_installed = JobHooks()


def install_hooks(hooks: JobHooks, *, replace: bool = False) -> None:
    global _installed
    if type(_installed) not in (JobHooks, type(hooks)) and not replace:
        raise RuntimeError(f"job hooks are installed already ({type(_installed).__name__}); "
                           "only the app that owns Job.event installs them")
    _installed = hooks


def hooks() -> JobHooks:
    return _installed

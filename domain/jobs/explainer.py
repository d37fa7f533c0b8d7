"""Why a job is not running: the door through which the admin's job page gets the answer.

The answer needs facts this app does not have and must not import: the broker's queue depths,
which workers consume which queue, paused queues, webhook endpoints' circuits and rate limits,
bulk runs. The workers app, above all of them, knows them (workers/explain.py) and installs
its `JobExplainer` at start-up (WorkersConfig.ready); the API's
`GET /api/v1/jobs/{id}/explain` is the workers app's own view. The default here explains
nothing, so the jobs app works, and its admin renders, without the workers app.

As domain/jobs/hooks.py: a plain installed object, not a signal, and one installation (a
second is refused unless told to replace, for tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from domain.jobs.models import Job


@dataclass(frozen=True)
class Explanation:
    """A reason code (README "Why isn't this job running?"), one sentence for a human, and
    the machine-readable facts behind it."""

    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    checked_at: datetime | None = None


class JobExplainer:
    def explain(self, job: Job) -> Explanation | None:
        """Why this job is (or is not) running now; None when nobody can say."""
        return None


_installed = JobExplainer()


def install_explainer(explainer: JobExplainer, *, replace: bool = False) -> None:
    global _installed
    if type(_installed) not in (JobExplainer, type(explainer)) and not replace:
        raise RuntimeError(f"a job explainer is installed already "
                           f"({type(_installed).__name__})")
    _installed = explainer


def explainer() -> JobExplainer:
    return _installed

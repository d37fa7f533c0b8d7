import logging

from celery import current_task

from domain.bulk.kinds import BULK_RUN
from domain.bulk.runner import bulk_run_execute
from domain.jobs.models import Job
from workers.base import jobs_task

logger = logging.getLogger(__name__)


def _flower_progress(done: int, total: int | None) -> None:
    # A custom task event: Flower shows the task in state PROGRESS with these fields (its
    # state machine turns an unknown "task-<name>" event into that state). Sent only when the
    # worker sends task events (CELERY_WORKER_SEND_TASK_EVENTS, on by default).
    task = current_task
    if task is None or not task.request.id or not task.app.conf.worker_send_task_events:
        return
    try:  # a monitoring nicety: a broker hiccup must not fail a chunk that has committed
        task.send_event("task-progress", retry=False, done=done, total=total)
    except Exception as exc:  # noqa: BLE001
        logger.warning("bulk progress event not sent error=%r", exc)


@jobs_task(kind=BULK_RUN)
def run(jobs: list[Job]) -> list:
    """Run a bulk operation's chunks from its checkpoint (one run per job)."""
    return [bulk_run_execute(job=job, on_progress=_flower_progress) for job in jobs]

"""A test-only periodic task for the scheduler tests, imported by the test process and by the
worker subprocesses of the two-Beat test (`celery worker -I tests.scheduler.probe`).

It runs under the ledger (`@scheduled(PROBE_SCHEDULE, lock_ttl=30)`) and its effects are
countable per slot, in the Redis of `settings.REDIS_URL` under the run's key prefix (in a
worker subprocess of the fault suite, that suite's own Redis):

- `probe:effects`     a HASH: slot (ISO, as the message header carried it) -> body runs for it
- `probe:header-via`  a HASH: how the slot reached the body ("attribute": `request.
                      conveyor_slot`, as a worker hands a custom header over; "headers":
                      `request.headers[...]`, as `Task.apply(headers=...)` does; "none")
- `probe:outcomes`    a HASH: what each delivery of the task came to ("ran", "duplicate",
                      "overlap", ...), counted by a task_postrun receiver, so duplicates that
                      the ledger refused are counted too
"""

from __future__ import annotations

from celery import current_task, shared_task
from celery.signals import task_postrun

from domain.common.redis import redis_client, redis_key
from scheduler.ledger import SLOT_HEADER, scheduled
from workers.base import ConveyorTask

PROBE_TASK = "conveyor.maintenance.scheduler_probe"  # routed to the maintenance queue
PROBE_SCHEDULE = "probe"  # the ledger's schedule name; the PeriodicTask is "conveyor:probe"


def effects_key() -> str:
    return redis_key("probe", "effects")


def header_via_key() -> str:
    return redis_key("probe", "header-via")


def outcomes_key() -> str:
    return redis_key("probe", "outcomes")


@shared_task(name=PROBE_TASK, base=ConveyorTask)
@scheduled(PROBE_SCHEDULE, lock_ttl=30)
def scheduler_probe() -> dict:
    """Count one run of the slot the message names."""
    request = current_task.request
    slot, via = getattr(request, SLOT_HEADER, None), "attribute"
    if not slot:
        slot, via = (request.headers or {}).get(SLOT_HEADER), "headers"
    if not slot:
        slot, via = "none", "none"
    client = redis_client()
    client.hincrby(effects_key(), slot, 1)
    client.hincrby(header_via_key(), via, 1)
    return {"slot": slot}


@task_postrun.connect(weak=False)
def _count_outcome(sender=None, retval=None, **kwargs) -> None:
    if getattr(sender, "name", None) != PROBE_TASK:
        return
    outcome = retval.get("skipped", "ran") if isinstance(retval, dict) else "error"
    redis_client().hincrby(outcomes_key(), str(outcome), 1)

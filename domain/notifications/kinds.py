"""The notifications app's job kinds: fanning an event out to its webhook endpoints, and
sending the deliveries."""

from django.conf import settings

from domain.jobs.registry import JobKind, register_job_kind
from domain.jobs.retry import TRANSIENT, RetryPolicy

# Seconds, minutes, then hours between attempts, with ±10% jitter (WEBHOOK_RETRY_SCHEDULE; by
# default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: 8 attempts over about 27.6 hours). Waits
# past 15 minutes are kept in the job row and sent by the outbox relay when due.
WEBHOOK_RETRY = RetryPolicy.scheduled("webhook", settings.WEBHOOK_RETRY_SCHEDULE)

WEBHOOK_FANOUT = register_job_kind(
    JobKind(
        name="webhook_fanout",
        task_name="conveyor.notifications.fan_out",
        description="Make an event's message and one delivery per subscribed webhook "
        "endpoint (one job per event, whatever the number of endpoints).",
        params_schema={"type": "object", "additionalProperties": False},
        retry=TRANSIENT,
        # A few statements for a whole batch of events: 100 fit one soft time limit easily.
        batch_size=100,
        triggerable=False,
    )
)

WEBHOOK_DELIVERY = register_job_kind(
    JobKind(
        name="webhook_delivery",
        task_name="conveyor.notifications.deliver",
        description="Send one signed webhook delivery (many travel together and are sent "
        "concurrently).",
        params_schema={
            "type": "object",
            "properties": {"delivery": {"type": "string", "format": "uuid"}},
            "required": ["delivery"],
            "additionalProperties": False,
        },
        retry=WEBHOOK_RETRY,
        # Sent concurrently, so a message's deliveries take about as long as the slowest of
        # them (at most the read timeout, or a few read timeouts when more than
        # WEBHOOK_ENDPOINT_MAX_IN_FLIGHT of them go to one hanging endpoint). 100 halve the
        # per-message costs of 50 (claim, load, the bookkeeping statements, the broker
        # round trips), with a tail still well under the soft time limit: bench webhooks,
        # 1 worker, median of 4 rounds, 974 deliveries/s with 50, 1,165 with 100 (200: 1,236,
        # with a wider spread and twice the tail).
        batch_size=100,
        triggerable=False,
    )
)

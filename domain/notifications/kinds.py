"""The notifications app's job kinds: fanning an event out to its webhook endpoints and
sending those deliveries; sending emails, writing inbox items, and the notifications events'
notifiers send."""

from django.conf import settings

from domain.jobs.registry import JobKind, register_job_kind
from domain.jobs.retry import TRANSIENT, RetryPolicy

# Seconds, minutes, then hours between attempts, with ±10% jitter (WEBHOOK_RETRY_SCHEDULE; by
# default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: 8 attempts over about 27.6 hours). Waits
# past 15 minutes are kept in the job row and sent by the outbox relay when due.
WEBHOOK_RETRY = RetryPolicy.scheduled("webhook", settings.WEBHOOK_RETRY_SCHEDULE)

# The params of a job that sends one delivery (a webhook's, an email's).
ONE_DELIVERY = {
    "type": "object",
    "properties": {"delivery": {"type": "string", "format": "uuid"}},
    "required": ["delivery"],
    "additionalProperties": False,
}

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
        params_schema=ONE_DELIVERY,
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

# 4xx replies and connection failures wait EMAIL_RETRY_SCHEDULE between attempts (by default
# 30 s, 2 min, 10 min, 30 min, 1 h, 3 h: 7 attempts over about 4.7 hours).
EMAIL_RETRY = RetryPolicy.scheduled("email", settings.EMAIL_RETRY_SCHEDULE)

EMAIL_DELIVERY = register_job_kind(
    JobKind(
        name="email_delivery",
        task_name="conveyor.notifications.send_emails",
        description="Render and send one email delivery (a message's deliveries share one "
        "SMTP connection); a digest's carrier sends its whole digest.",
        params_schema=ONE_DELIVERY,
        retry=EMAIL_RETRY,
        batch_size=100,
        triggerable=False,
    )
)

# In-app deliveries are written a chunk at a time, one job per chunk: writing them is a few
# statements that succeed or fail together, so a job per delivery (as email has, where each
# recipient's server answers for itself) would only cost rows and broker messages.
INBOX_CHUNK = 250

INBOX_DELIVERY = register_job_kind(
    JobKind(
        name="inbox_delivery",
        task_name="conveyor.notifications.write_inbox",
        description="Render a chunk of in-app deliveries (up to 250) into their recipients' "
        "inboxes, with a few statements.",
        params_schema={
            "type": "object",
            "properties": {"deliveries": {"type": "array", "minItems": 1,
                                          "maxItems": INBOX_CHUNK,
                                          "items": {"type": "string", "format": "uuid"}}},
            "required": ["deliveries"],
            "additionalProperties": False,
        },
        retry=TRANSIENT,
        batch_size=10,
        triggerable=False,
    )
)

EVENT_NOTIFICATION = register_job_kind(
    JobKind(
        name="event_notification",
        task_name="conveyor.notifications.notify_from_events",
        description="Send the notification an event's notifier builds from it (once per "
        "event and notifier, however often the job runs).",
        params_schema={
            "type": "object",
            "properties": {"notifier": {"type": "string", "minLength": 1}},
            "required": ["notifier"],
            "additionalProperties": False,
        },
        retry=TRANSIENT,
        batch_size=50,
        triggerable=False,
    )
)

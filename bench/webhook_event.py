"""The `bench.webhook` event type, for the suite only: no handler of its own, so the one job
an event of it gets is the webhook fan-out (when an endpoint subscribes to it), and the
`webhooks` scenario measures webhook delivery and nothing else.

Registered by bench/apps.py, which only bench/settings.py installs.
"""

from domain.events.registry import EventType, register_event_type

BENCH_WEBHOOK = register_event_type(
    EventType(
        name="bench.webhook",
        description="Benchmark only: no handler; webhook endpoints subscribe to it.",
        schema={"type": "object"},
        example={"order_id": "ord_1", "amount": 12.5, "currency": "EUR", "items": 3},
    )
)

from domain.events.registry import EventType, register_event_type

DEACTIVATED = register_event_type(
    EventType(
        name="customers.deactivated",
        description="A `customers.deactivate_inactive` run marked customers inactive (those "
        "whose last activity is before `cutoff`). Published by the server when the run "
        "succeeds; subscribe a webhook endpoint to hear of it.",
        schema={
            "type": "object",
            "properties": {
                "run_id": {"type": "string", "format": "uuid"},
                "cutoff": {"type": "string", "format": "date-time"},
                "days": {"type": "integer", "minimum": 1},
                "rows_changed": {"type": "integer", "minimum": 0},
            },
            "required": ["run_id", "cutoff", "days", "rows_changed"],
        },
        example={"run_id": "3f2c1e5a-8b7d-4c6e-9f0a-1b2c3d4e5f60",
                 "cutoff": "2025-11-28T02:00:00+00:00", "days": 365, "rows_changed": 42},
        publishable=False,
    )
)
